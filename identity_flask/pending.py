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

Beside them, one more cookie (:data:`RECORD_COOKIE`, as encrypted and with the
same flags) keeps the browser's recent sign-ins for an hour: a digest of each
state, when and on which origin it started, whether it was finished or
dropped, and when sign-ins were finished. It holds no secret; it is what
tells a replayed, expired or dropped sign-in apart at a failed callback
(:func:`identity_flask.diagnosis.unmatched_callback`), and what counts a login
loop even when the session store loses every session
(:func:`identity_flask.diagnosis.repeated_sign_in`).
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
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, after_this_request, current_app, request
from werkzeug.wrappers import Response

from . import diagnosis
from .errors import ConfigurationError, SignInError

logger = logging.getLogger(__name__)

#: The cookies' names begin with this, followed by a digest of the sign-in's state.
COOKIE_PREFIX = "identity_sign_in_"
#: Browsers keep cookies of up to 4,096 bytes (name, value and attributes); stay below.
MAX_COOKIE_BYTES = 3800
#: The sign-in cookies together (names and values) stay below this many bytes: older sign-ins are
#: dropped first. Servers refuse a longer Cookie header (gunicorn and nginx at 8 KB by default)
#: before the app could clear it, so crafted links with long return addresses would lock a
#: browser out. Eight sign-ins with everyday return addresses take about 4 KB.
MAX_COOKIES_BYTES = 5000
#: At most this many of a request's sign-in cookies are read; more come only from a forged request.
MAX_COOKIES_READ = 32
#: An entry dated this far in the future is refused (clocks of several instances may differ a little).
CLOCK_SKEW = 60
_PURPOSE = b"identity_flask pending sign-ins v2"

#: The cookie that keeps the browser's recent sign-ins (its name does not begin with :data:`COOKIE_PREFIX`).
RECORD_COOKIE = "identity_history"
#: The record keeps sign-ins for at least this many seconds (twice the sign-in timeout if longer).
RECORD_SECONDS = 3600
#: The record keeps at most this many started sign-ins, and this many finished ones.
RECORD_STARTED = 24
RECORD_FINISHED = 8
#: Longest origin the record keeps for a sign-in (the Host header is the client's to choose).
MAX_ORIGIN = 100
_RECORD_PURPOSE = b"identity_flask sign-in record v1"
_RECORD_KEY = "identity_flask.sign_in_record"
#: What became of a started sign-in, as the record keeps it.
PENDING, SUPERSEDED, USED = "pending", "superseded", "used"

#: The clock entries are dated by; tests may replace it.
clock: Callable[[], float] = time.time

Entry = dict[str, Any]


def cookie_name(state: str) -> str:
    """The name of the cookie that holds the sign-in started with ``state``."""
    return COOKIE_PREFIX + hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()[:20]


def _fernet(secret: str | bytes, purpose: bytes = _PURPOSE) -> Fernet:
    raw = secret.encode() if isinstance(secret, str) else secret
    key = hmac.new(raw, purpose, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _key(state: str) -> str:
    """How the record names the sign-in started with ``state``: its cookie's digest."""
    return cookie_name(state)[len(COOKIE_PREFIX) :]


@dataclass(frozen=True)
class Trace:
    """What a browser's sign-in cookies say about one state: the evidence for a
    callback that found no sign-in with it (see :meth:`PendingSignIns.trace`)."""

    #: This state's cookie: ``"absent"``, ``"unreadable"`` (it does not decrypt), or
    #: ``"other"`` (it decrypts, and holds another sign-in).
    cookie: str
    #: How many other sign-in cookies came back.
    other_cookies: int
    #: Whether any sign-in cookie, or the record, came back.
    any_cookie: bool
    #: When the record says the sign-in started, if it knows it.
    started_at: float | None
    #: The scheme and host it started on, if the record knows it.
    started_on: str | None
    #: ``"pending"``, ``"superseded"`` (dropped for newer ones) or ``"used"``; ``None``
    #: when the record does not know the state.
    fate: str | None
    #: The time the trace was taken, by :data:`clock`.
    now: float


class _Record:
    """The browser's recent sign-ins, as :data:`RECORD_COOKIE` holds them."""

    def __init__(self, data: Any, now: float, keep_for: float) -> None:
        #: Started sign-ins by :func:`_key`: ``[started at, origin, fate]``.
        self.started: dict[str, list[Any]] = {}
        #: Finished sign-ins: ``[finished at, whether the session of the one before was lost]``.
        self.finished: list[list[Any]] = []
        self.changed = False
        if not isinstance(data, dict):
            return
        started, finished = data.get("s"), data.get("f")
        if isinstance(started, dict):
            for key, item in started.items():
                if (
                    isinstance(item, list)
                    and len(item) == 3
                    and isinstance(item[0], (int, float))
                    and 0 <= now - item[0] < keep_for
                ):
                    self.started[str(key)] = item
        if isinstance(finished, list):
            self.finished = [
                item
                for item in finished
                if isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], (int, float))
                and 0 <= now - item[0] < keep_for
            ]

    def data(self) -> dict[str, Any]:
        newest = sorted(self.started.items(), key=lambda kv: kv[1][0])[-RECORD_STARTED:]
        return {"s": dict(newest), "f": self.finished[-RECORD_FINISHED:]}


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
        if not isinstance(app.config["SECRET_KEY"], (str, bytes)):
            raise ConfigurationError(
                f"SECRET_KEY must be a string or bytes, got {type(app.config['SECRET_KEY']).__name__}: "
                "set it to a long random value, for example secrets.token_hex(32) kept in the environment."
            )
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
        if fallbacks is not None and (
            isinstance(fallbacks, (str, bytes)) or not all(isinstance(k, (str, bytes)) for k in fallbacks)
        ):
            raise ConfigurationError(
                "SECRET_KEY_FALLBACKS must be a list of old keys, e.g. ['old-key'], "
                f"got {type(fallbacks).__name__}: each character of a string would be a key."
            )

    def _crypto(self, purpose: bytes = _PURPOSE) -> MultiFernet:
        config = current_app.config
        secrets = [config["SECRET_KEY"], *(config.get("SECRET_KEY_FALLBACKS") or ())]
        return MultiFernet([_fernet(s, purpose) for s in secrets if s])

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

    @staticmethod
    def _options() -> dict[str, Any]:
        """The flags of the extension's cookies: the session cookie's, ``Secure`` over https too."""
        interface = current_app.session_interface
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return {
            "path": interface.get_cookie_path(app),
            "domain": interface.get_cookie_domain(app),
            "secure": bool(interface.get_cookie_secure(app) or request.is_secure),
            "httponly": True,
            "samesite": interface.get_cookie_samesite(app),
        }

    def _send(self, cookies: dict[str, str | None]) -> None:
        """Set (a value) or delete (``None``) these cookies on the current response."""

        @after_this_request
        def set_cookies(response: Response) -> Response:
            options = self._options()
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
        The record notes the sign-in and the ones dropped for it; a sign-in
        whose cookies cannot reach the redirect URI's host is logged (see
        :func:`identity_flask.diagnosis.start_warning`).
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
        sizes: dict[str, int] = {}
        for name, raw in self._cookies():
            sizes[name] = len(name) + len(raw)
            if name not in live:
                changes[name] = None  # expired or unreadable
        # Newest first, the others are kept while they are fewer than `keep` with this one and
        # all the sign-in cookies fit in MAX_COOKIES_BYTES; the older rest are dropped.
        room = MAX_COOKIES_BYTES - len(cookie_name(state)) - len(sealed)
        newest_first = sorted(
            ((e["created"], name) for name, e in live.items() if name != cookie_name(state)), reverse=True
        )
        dropped = []
        for index, (_created, name) in enumerate(newest_first):
            room -= sizes[name]
            if index >= self.keep - 1 or room < 0:
                dropped.append(name)
        for name in dropped:
            changes[name] = None
        self._send(changes)

        origin = diagnosis.request_origin()[:MAX_ORIGIN]
        record = self._record()
        for name in dropped:
            item = record.started.get(name[len(COOKIE_PREFIX) :])
            if item is not None:
                item[2] = SUPERSEDED
        record.started[_key(state)] = [int(now), origin, PENDING]
        record.changed = True
        redirect_uri = entry.get("flow", {}).get("redirect_uri")
        if isinstance(redirect_uri, str):
            found = diagnosis.start_warning(origin, redirect_uri)
            if found is not None:
                diagnosis.report(found, "Sign-in cannot finish")

    def take(self, state: str) -> tuple[Entry | None, bool]:
        """Remove and return the sign-in started with ``state``.

        :return: ``(entry, expired)``; ``entry`` is ``None`` when this browser
            has no such sign-in pending (:meth:`trace` then tells why).
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
        record = self._record()
        item = record.started.get(_key(state))
        if item is not None:
            item[2] = USED
            record.changed = True
        return entry, now - entry["created"] >= self.ttl

    def trace(self, state: str) -> Trace:
        """What this browser's cookies say about the sign-in started with ``state``,
        for a callback that found none (see :func:`identity_flask.diagnosis.unmatched_callback`)."""
        now = clock()
        name = cookie_name(state)
        raw = request.cookies.get(name)
        cookie = "absent"
        if raw:
            entry = self._decrypt(self._crypto(), raw, now)
            cookie = "unreadable" if entry is None else "other"
        others = sum(1 for other, _raw in self._cookies() if other != name)
        item = self._record().started.get(_key(state))
        return Trace(
            cookie=cookie,
            other_cookies=others,
            any_cookie=bool(raw) or others > 0 or RECORD_COOKIE in request.cookies,
            started_at=None if item is None else float(item[0]),
            started_on=None if item is None else str(item[1]),
            fate=None if item is None else str(item[2]),
            now=now,
        )

    def finished(self) -> list[tuple[float, bool]]:
        """The sign-ins this browser finished lately: how many seconds ago, and whether
        each found the session of the one before lost (see :meth:`finish`)."""
        now = clock()
        return [(now - at, bool(lost)) for at, lost in self._record().finished]

    def finish(self, *, lost: bool) -> None:
        """Note that this browser finished a sign-in now.

        :param lost: whether its session cookie named a session the store no longer had.
        """
        record = self._record()
        record.finished.append([int(clock()), lost])
        record.changed = True

    # --- the record ------------------------------------------------------------------------------

    def _record_seconds(self) -> int:
        return max(RECORD_SECONDS, 2 * self.ttl)

    def _record(self) -> _Record:
        """The browser's record, read once per request; written back with the response when changed."""
        # Kept in the request's environ, not in ``g``: an app context (and its ``g``) may
        # outlive one request, as it does when a test pushes one.
        record: _Record | None = request.environ.get(_RECORD_KEY)
        if record is None:
            now, data = clock(), None
            raw = request.cookies.get(RECORD_COOKIE)
            if raw:
                try:
                    data = json.loads(zlib.decompress(self._crypto(_RECORD_PURPOSE).decrypt(raw.encode("ascii"))))
                except (InvalidToken, UnicodeError, zlib.error, ValueError):
                    logger.info("Ignored a sign-in record cookie that does not decrypt")
            record = _Record(data, now, self._record_seconds())
            request.environ[_RECORD_KEY] = record
            self._write_record_later(record)
        return record

    def _write_record_later(self, record: _Record) -> None:
        @after_this_request
        def write(response: Response) -> Response:
            if not record.changed:
                return response
            data = record.data()
            sealed = self._seal_record(data)
            while len(sealed) > MAX_COOKIE_BYTES and data["s"]:
                # Only a client choosing huge Host headers gets here; it loses the oldest lines.
                data["s"] = dict(sorted(data["s"].items(), key=lambda kv: kv[1][0])[len(data["s"]) // 2 + 1 :])
                sealed = self._seal_record(data)
            response.set_cookie(RECORD_COOKIE, sealed, max_age=self._record_seconds(), **self._options())
            return response

    def _seal_record(self, data: dict[str, Any]) -> str:
        crypto = self._crypto(_RECORD_PURPOSE)
        return crypto.encrypt(zlib.compress(json.dumps(data, separators=(",", ":")).encode())).decode()
