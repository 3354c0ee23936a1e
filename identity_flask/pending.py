"""Sign-ins this browser started and has not finished, kept in the browser.

A pending sign-in (MSAL's flow: PKCE verifier, nonce, scopes, the page to
return to) is needed only between ``/login`` and the callback, a few minutes
at most. Keeping it in the server-side session made every anonymous ``/login``
a stored session that lived as long as any other (31 days by default), so
anonymous traffic could fill or evict the store. It travels instead in one
cookie that is:

- **encrypted and authenticated** (Fernet, keyed from the app's
  ``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` still decrypt): the browser can
  neither read the PKCE verifier nor forge or alter an entry;
- **short-lived**: ``Max-Age`` is the sign-in timeout, and each entry carries
  the time it was started, checked against that timeout on the server;
- ``HttpOnly``, with the session cookie's path, domain, ``SameSite`` and
  ``Secure`` flags (``Secure`` also whenever the request is https).

Entries are keyed by the OAuth ``state`` value, so several tabs can sign in at
once; only the newest ``max_pending_sign_ins`` are kept, and fewer if the
cookie would outgrow what browsers accept. A callback takes its entry out, so
a replayed callback finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, Request, after_this_request, current_app, request
from werkzeug.wrappers import Response

from .errors import ConfigurationError

logger = logging.getLogger(__name__)

#: The cookie's name.
COOKIE_NAME = "identity_sign_in"
#: Browsers keep cookies of up to 4,096 bytes (name, value and attributes); stay below.
MAX_COOKIE_BYTES = 3800
_PURPOSE = b"identity_flask pending sign-ins v1"

#: The clock entries are dated by; tests may replace it.
clock: Callable[[], float] = time.time

Entry = dict[str, Any]


def _fernet(secret: str | bytes) -> Fernet:
    raw = secret.encode() if isinstance(secret, str) else secret
    key = hmac.new(raw, _PURPOSE, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


class PendingSignIns:
    """Reads and writes the pending sign-ins of the current request's browser.

    :param ttl: seconds a sign-in may take, from ``/login`` to the callback.
    :param keep: how many sign-ins one browser may have pending at once.
    """

    def __init__(self, *, ttl: int, keep: int) -> None:
        self.ttl = ttl
        self.keep = keep

    @staticmethod
    def check(app: Flask) -> None:
        """Fail at start-up when the app has no ``SECRET_KEY`` to encrypt the cookie with."""
        if not app.config.get("SECRET_KEY"):
            raise ConfigurationError(
                "SECRET_KEY is not set. identity_flask encrypts each pending sign-in (its PKCE "
                "verifier and nonce) into a short-lived cookie with a key derived from it. Set "
                "app.config['SECRET_KEY'] to a long random value that is the same on every "
                "worker and instance (for example from an environment variable)."
            )

    def _crypto(self) -> MultiFernet:
        config = current_app.config
        secrets = [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ())]
        return MultiFernet([_fernet(s) for s in secrets if s])

    def _read(self, req: Request) -> dict[str, Entry]:
        raw = req.cookies.get(COOKIE_NAME)
        if not raw:
            return {}
        try:
            data = json.loads(zlib.decompress(self._crypto().decrypt(raw.encode("ascii"))))
        except (InvalidToken, UnicodeError, zlib.error, ValueError):
            logger.info("Ignored a pending sign-in cookie that does not decrypt")
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _live(self, entries: dict[str, Entry], now: float) -> dict[str, Entry]:
        return {k: v for k, v in entries.items() if now - float(v.get("created", 0)) < self.ttl}

    def _write(self, entries: dict[str, Entry]) -> None:
        """Send ``entries`` (newest last) back to the browser with the current response."""
        crypto = self._crypto()
        value = ""
        while entries:
            value = crypto.encrypt(zlib.compress(json.dumps(entries, separators=(",", ":")).encode())).decode()
            if len(value) <= MAX_COOKIE_BYTES:
                break
            entries = dict(list(entries.items())[1:])  # drop the oldest until it fits
            value = ""

        @after_this_request
        def set_cookie(response: Response) -> Response:
            interface = current_app.session_interface
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            options: dict[str, Any] = {
                "path": interface.get_cookie_path(app),
                "domain": interface.get_cookie_domain(app),
                "secure": bool(interface.get_cookie_secure(app) or request.is_secure),
                "httponly": True,
                "samesite": interface.get_cookie_samesite(app),
            }
            if value:
                response.set_cookie(COOKIE_NAME, value, max_age=self.ttl, **options)
            else:
                response.delete_cookie(COOKIE_NAME, **options)
            return response

    def add(self, state: str, entry: Entry) -> None:
        """Remember a sign-in started with ``state``; drop expired ones and all but the newest few."""
        now = clock()
        entries = self._live(self._read(request), now)
        entries.pop(state, None)
        entries[state] = {**entry, "created": now}
        newest = sorted(entries.items(), key=lambda item: float(item[1]["created"]))[-self.keep :]
        self._write(dict(newest))

    def take(self, state: str) -> tuple[Entry | None, bool]:
        """Remove and return the sign-in started with ``state``.

        :return: ``(entry, expired)``; ``entry`` is ``None`` when this browser
            has no such sign-in pending.
        """
        entries = self._read(request)
        entry = entries.pop(state, None)
        if entry is None:
            return None, False
        now = clock()
        self._write(self._live(entries, now))
        return entry, now - float(entry.get("created", 0)) >= self.ttl

    def entries(self) -> dict[str, Entry]:
        """The unexpired sign-ins the current request's browser has pending, by state."""
        return self._live(self._read(request), clock())

    def count(self) -> int:
        """How many unexpired sign-ins this browser has pending."""
        return len(self.entries())
