"""What makes a Flask-Session store safe to keep token caches in.

Three guarantees for every store the extension sets up:

- **Data is never unpickled.** Flask-Session falls back to ``pickle.loads``
  for data it cannot decode, and cachelib's stores pickle every value, so
  anyone who can write to the store (a leaked Redis key, a writable session
  folder) could run code in the app. Sessions are encoded with msgpack and
  decoded with msgpack or JSON only; anything else is refused with a warning
  and the request gets a fresh session.
- **A record deleted is not written back.** Flask-Session has no locking: a
  request that loaded a session before sign-out (or before the id was rotated
  at sign-in) and writes it afterwards would put the deleted record back under
  the old id, signing the old cookie in again. A session that was loaded from
  the store is therefore written back only if its record still exists, in one
  step where the store allows it (Redis ``SET ... XX``; a lock on the file
  store's folder), else by reading first.
- **Expired files go away.** The default file store removes expired session
  files as it writes, at most once every :data:`PRUNE_INTERVAL` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import msgspec
from cachelib.file import FileSystemCache
from flask import Flask, Request, has_request_context, request
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from werkzeug.wrappers import Response

try:  # fcntl is POSIX only; elsewhere a lock per process is what there is
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: Seconds between two sweeps of expired files in the default file store.
PRUNE_INTERVAL = 300

#: The clock the file store's sweep goes by; tests may replace it.
clock: Callable[[], float] = time.time

_ENCODE = msgspec.msgpack.Encoder().encode
_DECODERS = (msgspec.msgpack.Decoder().decode, msgspec.json.Decoder().decode)


def decode(data: bytes) -> Any:
    """Decode msgpack or JSON; ``None`` (and a warning) for anything else."""
    for decoder in _DECODERS:
        with contextlib.suppress(msgspec.DecodeError):
            return decoder(data)
    logger.warning("Refused session data that is neither msgpack nor JSON (%d bytes)", len(data))
    return None


class SessionSerializer:
    """Flask-Session's serializer interface, without its pickle fallback."""

    def encode(self, session: ServerSideSession) -> bytes:
        return _ENCODE(dict(session))

    def decode(self, serialized_data: bytes) -> dict[str, Any] | None:
        data = decode(serialized_data)
        if data is not None and not isinstance(data, dict):
            logger.warning("Refused session data that is not a mapping")
            return None
        return data


class CacheSerializer:
    """cachelib's serializer interfaces (files: ``dump``/``load``; others:
    ``dumps``/``loads``), with msgpack instead of pickle."""

    def dump(self, value: Any, f: IO[bytes]) -> None:
        f.write(_ENCODE(value))

    def load(self, f: IO[bytes]) -> Any:
        return decode(f.read())

    def dumps(self, value: Any) -> bytes:
        return _ENCODE(value)

    def loads(self, value: bytes | None) -> Any:
        return None if value is None else decode(value)


class SessionFileCache(FileSystemCache):
    """cachelib's file store with msgpack values, expired files swept as it writes,
    and a lock on its folder for writes that must not race a delete."""

    serializer = CacheSerializer()  # type: ignore[assignment]

    def __init__(self, cache_dir: str, threshold: int = 0, mode: int = 0o600) -> None:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        super().__init__(cache_dir, threshold=threshold, mode=mode)
        self._next_sweep = 0.0

    def _prune(self) -> None:
        now = clock()
        if now >= self._next_sweep:
            self._next_sweep = now + PRUNE_INTERVAL
            self._remove_expired(now)
        super()._prune()


_process_locks: dict[str, threading.Lock] = {}


@contextlib.contextmanager
def folder_lock(cache: FileSystemCache) -> Iterator[None]:
    """Hold an exclusive lock on ``cache``'s folder: across threads, and across
    processes where the platform has ``flock``."""
    path = os.path.abspath(cache._path)
    thread_lock = _process_locks.setdefault(path, threading.Lock())
    with thread_lock:
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def make_safe(interface: ServerSideSessionInterface) -> None:
    """Give a Flask-Session interface built by the extension the guarantees above."""
    interface.serializer = SessionSerializer()
    cache = getattr(interface, "cache", None)  # cachelib-backed
    if cache is not None and hasattr(cache, "serializer"):
        cache.serializer = CacheSerializer()
    interface.__class__ = _guarded(type(interface))


_guarded_classes: dict[type[Any], type[Any]] = {}


def _guarded(base: type[Any]) -> type[Any]:
    """``base`` with :class:`GuardedSaves` mixed in; one class per base, same name."""
    if base not in _guarded_classes:
        namespace = {"__doc__": base.__doc__, "__module__": base.__module__}
        _guarded_classes[base] = type(base.__name__, (GuardedSaves, base), namespace)
    return _guarded_classes[base]


def _is_redis(interface: ServerSideSessionInterface) -> bool:
    try:
        from flask_session.redis import RedisSessionInterface
    except ImportError:  # the redis package is not installed
        return False
    return isinstance(interface, RedisSessionInterface)


class GuardedSaves(ServerSideSessionInterface):  # type: ignore[misc]
    """Mixed in before a Flask-Session interface: conditional saves, and a
    ``Secure`` cookie whenever the request came over https."""

    def open_session(self, app: Flask, request: Request) -> ServerSideSession:
        session = super().open_session(app, request)
        # A session is "stored" when the cookie named a record that was found: only
        # then may a save find it gone, and must not bring it back.
        cookie = request.cookies.get(self.get_cookie_name(app))
        issued = self._sign(app, session.sid) if self.use_signer else session.sid
        session.identity_stored = bool(session) and cookie == issued
        return session

    def regenerate(self, session: ServerSideSession) -> None:
        super().regenerate(session)
        session.identity_stored = False

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = bool(app.config["SESSION_COOKIE_SECURE"])
        return configured or (has_request_context() and request.is_secure)

    def _delete_session(self, store_id: str) -> None:
        cache = getattr(self, "cache", None)
        if isinstance(cache, FileSystemCache):
            with folder_lock(cache):
                super()._delete_session(store_id)
        else:
            super()._delete_session(store_id)

    def _write_back(self, app: Flask, session: ServerSideSession, store_id: str) -> bool:
        """Write ``session``; if it was loaded from the store, only while its record
        still exists. Whether it was written."""
        lifetime = app.permanent_session_lifetime
        if not getattr(session, "identity_stored", False):
            self._upsert_session(lifetime, session, store_id)
            return True
        cache = getattr(self, "cache", None)
        if _is_redis(self):
            seconds = int(lifetime.total_seconds())
            written = self.client.set(store_id, self.serializer.encode(session), ex=seconds, xx=True)
            return bool(written)
        if isinstance(cache, FileSystemCache):
            with folder_lock(cache):
                if not cache.has(store_id):
                    return False
                self._upsert_session(lifetime, session, store_id)
                return True
        if self._retrieve_session_data(store_id) is None:
            return False
        self._upsert_session(lifetime, session, store_id)
        return True

    def save_session(self, app: Flask, session: ServerSideSession, response: Response) -> None:
        name, domain, path = self.get_cookie_name(app), self.get_cookie_domain(app), self.get_cookie_path(app)
        if session.accessed:
            response.vary.add("Cookie")
        if not session:
            if session.modified:
                self._delete_session(self._get_store_id(session.sid))
                response.delete_cookie(name, domain=domain, path=path)
                response.vary.add("Cookie")
            return
        if not self.should_set_storage(app, session):
            return
        if not self._write_back(app, session, self._get_store_id(session.sid)):
            logger.info("Dropped a write to a session that was signed out or renewed meanwhile")
            return
        if not self.should_set_cookie(app, session):
            return
        response.set_cookie(
            name,
            self._sign(app, session.sid) if self.use_signer else session.sid,
            expires=self.get_expiration_time(app, session),
            httponly=self.get_cookie_httponly(app),
            domain=domain,
            path=path,
            secure=self.get_cookie_secure(app),
            samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")
