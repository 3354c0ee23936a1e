"""Sign-ins this browser started and has not finished, kept in the browser.

A pending sign-in (MSAL's flow: PKCE verifier, nonce, scopes, the page to
return to) is needed only between ``/login`` and the callback, a few minutes
at most. Keeping it in the server-side session made every anonymous ``/login``
a stored session that lived as long as any other (31 days by default), so
anonymous traffic could fill or evict the store. Each pending sign-in travels
instead in a cookie of its own, named after a digest of its OAuth ``state``
(so several tabs, even started at the same instant, never overwrite each
other), that is:

- **encrypted and authenticated** (Fernet, keyed from the app's
  ``SECRET_KEY``; ``SECRET_KEY_FALLBACKS`` still decrypt): the browser can
  neither read the PKCE verifier nor forge or alter an entry;
- **short-lived**: ``Max-Age`` is the sign-in timeout, and each entry carries
  the time it was started, checked against that timeout on the server;
- ``HttpOnly``, with the session cookie's path, domain, ``SameSite`` and
  ``Secure`` flags (``Secure`` also whenever the request is https).

Only the newest ``max_pending_sign_ins`` are kept. A callback takes its entry
out (its cookie is deleted), so a replayed callback finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, after_this_request, current_app, request
from werkzeug.wrappers import Response

from .errors import ConfigurationError, SignInError

logger = logging.getLogger(__name__)

#: The cookies' names begin with this, followed by a digest of the sign-in's state.
COOKIE_PREFIX = "identity_sign_in_"
#: Browsers keep cookies of up to 4,096 bytes (name, value and attributes); stay below.
MAX_COOKIE_BYTES = 3800
#: At most this many of a request's sign-in cookies are read; more come only from a forged request.
MAX_COOKIES_READ = 32
#: An entry dated this far in the future is refused (clocks of several instances may differ a little).
CLOCK_SKEW = 60
_PURPOSE = b"identity_flask pending sign-ins v2"

#: The clock entries are dated by; tests may replace it.
clock: Callable[[], float] = time.time

Entry = dict[str, Any]


def cookie_name(state: str) -> str:
    """The name of the cookie that holds the sign-in started with ``state``."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()[:20]


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
        """Fail at start-up when the app has no usable key to encrypt the cookies with."""
        if not app.config.get("SECRET_KEY"):
            raise ConfigurationError(
                "SECRET_KEY is not set. identity_flask encrypts each pending sign-in (its PKCE "
                "verifier and nonce) into a short-lived cookie with a key derived from it. Set "
                "app.config['SECRET_KEY'] to a long random value that is the same on every "
                "worker and instance (for example from an environment variable)."
            )
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
        if fallbacks is not None and (
            isinstance(fallbacks, (str, bytes)) or not all(isinstance(k, (str, bytes)) for k in fallbacks)
        ):
            raise ConfigurationError(
                "SECRET_KEY_FALLBACKS must be a list of old keys, e.g. ['old-key'], "
                f"got {type(fallbacks).__name__}: each character of a string would be a key."
            )

    def _crypto(self) -> MultiFernet:
        config = current_app.config
        secrets = [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ())]
        return MultiFernet([_fernet(s) for s in secrets if s])

    def _decrypt(self, crypto: MultiFernet, raw: str, now: float) -> Entry | None:
        try:
            entry = json.loads(zlib.decompress(crypto.decrypt(raw.encode("ascii"))))
        except (InvalidToken, UnicodeError, zlib.error, ValueError):
            logger.info("Ignored a pending sign-in cookie that does not decrypt")
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("created"), (int, float)):
            return None
        if entry["created"] > now + CLOCK_SKEW:
            return None
        return entry

    def _cookies(self) -> Iterable[tuple[str, str]]:
        found = ((k, v) for k, v in request.cookies.items() if k.startswith(COOKIE_PREFIX))
        for index, item in enumerate(found):
            if index >= MAX_COOKIES_READ:
                return
            yield item

    def entries(self) -> dict[str, Entry]:
        """The unexpired sign-ins the current request's browser has pending, by cookie name."""
        crypto, now = self._crypto(), clock()
        found: dict[str, Entry] = {}
        for name, raw in self._cookies():
            entry = self._decrypt(crypto, raw, now)
            if entry is not None and now - entry["created"] < self.ttl:
                found[name] = entry
        return found

    def count(self) -> int:
        """How many unexpired sign-ins this browser has pending."""
        return len(self.entries())

    def _send(self, cookies: dict[str, str | None]) -> None:
        """Set (a value) or delete (``None``) these cookies on the current response."""

        @after_this_request
        def set_cookies(response: Response) -> Response:
            interface = current_app.session_interface
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            options: dict[str, Any] = {
                "path": interface.get_cookie_path(app),
                "domain": interface.get_cookie_domain(app),
                "secure": bool(interface.get_cookie_secure(app) or request.is_secure),
                "httponly": True,
                "samesite": interface.get_cookie_samesite(app),
            }
            for name, value in cookies.items():
                if value is None:
                    response.delete_cookie(name, **options)
                else:
                    response.set_cookie(name, value, max_age=self.ttl, **options)
            return response

    def _seal(self, entry: Entry) -> str:
        return self._crypto().encrypt(zlib.compress(json.dumps(entry, separators=(",", ":")).encode())).decode()

    def add(self, state: str, entry: Entry) -> None:
        """Remember a sign-in started with ``state``; forget expired ones and all but the newest few.

        An entry too large for a cookie (a very long return address) loses its
        return address rather than the sign-in: the user comes back to ``/``.
        """
        now = clock()
        sealed = self._seal({**entry, "created": now})
        if len(sealed) > MAX_COOKIE_BYTES:
            logger.info("A sign-in's return address was too long to keep; it will return to /")
            sealed = self._seal({**entry, "next": "/", "created": now})
        if len(sealed) > MAX_COOKIE_BYTES:
            # Still too large (a long claims request): no browser would keep the cookie,
            # and the callback could never be matched. Refuse now, saying why.
            raise SignInError("The sign-in request is too large.", error="invalid_request")
        changes: dict[str, str | None] = {cookie_name(state): sealed}
        live = self.entries()
        for name, _raw in self._cookies():
            if name not in live:
                changes[name] = None  # expired or unreadable
        older = sorted((e["created"], name) for name, e in live.items() if name != cookie_name(state))
        for _created, name in older[: max(0, len(older) - (self.keep - 1))]:
            changes[name] = None
        self._send(changes)

    def take(self, state: str) -> tuple[Entry | None, bool]:
        """Remove and return the sign-in started with ``state``.

        :return: ``(entry, expired)``; ``entry`` is ``None`` when this browser
            has no such sign-in pending.
        """
        name = cookie_name(state)
        raw = request.cookies.get(name)
        if not raw:
            return None, False
        self._send({name: None})
        now = clock()
        entry = self._decrypt(self._crypto(), raw, now)
        if entry is None or entry.get("flow", {}).get("state") != state:
            return None, False
        return entry, now - entry["created"] >= self.ttl
