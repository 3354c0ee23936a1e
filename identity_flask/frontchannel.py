"""Front-channel logout (OpenID Connect Front-Channel Logout 1.0).

When a user signs out at the provider, from this app or another, the provider
loads each app's registered front-channel logout URL in a hidden frame, with
the issuer (``iss``) and the provider's session id (``sid``, also in the id
tokens it issued in that session). The frame is cross-site, so the browser may
not send this app's session cookie: the session is found through an index
kept in the session store beside the sessions.

The index: at sign-in, after the session id was renewed, an entry under
``identity_frontchannel:<sha-256 of the issuer and the sid>`` lists the ids of
the app's sessions signed in from that provider session (a user signed in in
two browsers at once may have one provider session for both). It expires with
the session lifetime, loses its session at sign-out, and holds nothing but
session ids. A front-channel request deletes each listed session whose stored
id token claims name that very issuer and sid (so an entry can never end
another user's session) and takes it off the entry. Sessions are deleted from the store:
a request of that session still in flight does not write it back (see
:mod:`identity_flask.safe_store`), and the next one finds the user signed out.

Microsoft Entra ID (and External ID) call the URL with ``sid`` only, against
the specification: for those authorities the entry's key is built from the
sid alone and ``iss`` is checked when sent. For B2C and other OpenID Connect
providers, both are required.

Stores: Flask-Session's ``redis`` and ``cachelib`` interfaces (the default file
store among them). With any other, front-channel logout is unavailable: that
is logged once at start-up, and the endpoint answers 200 doing nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec
from cachelib.base import BaseCache
from cachelib.file import FileSystemCache
from flask import Flask
from flask.sansio.app import App
from flask.sessions import SessionMixin
from flask_session.base import ServerSideSessionInterface

from . import session_data
from .safe_store import decode, folder_lock

logger = logging.getLogger(__name__)

#: Where index entries live in the store; apart from session ids, which follow the store's key prefix.
INDEX_PREFIX = "identity_frontchannel:"
#: The key holding an entry's session ids: an entry read as a session by mistake is an empty one.
ENTRY_KEY = "_identity_frontchannel_sessions"
#: The most sessions one provider session keeps listed; the oldest go first.
MAX_SESSIONS = 32
#: The longest ``sid`` and ``iss`` a front-channel request may carry (Entra's sid is a GUID).
MAX_SID = 256
MAX_ISSUER = 2048

#: The authority kind whose provider sends ``sid`` without ``iss`` (see the module's text).
SID_ONLY_KIND = "entra"

_ENCODE = msgspec.msgpack.Encoder().encode


class BadRequest(ValueError):
    """The front-channel request is malformed; the message says how, without echoing it."""


class _Index(Protocol):
    """What an index needs of a store: read an entry, and change one in one step."""

    def read(self, key: str) -> list[str]: ...

    def change(self, key: str, edit: Callable[[list[str]], list[str]], ttl: int) -> None: ...


def _session_ids(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    listed = value.get(ENTRY_KEY)
    return [v for v in listed if isinstance(v, str)] if isinstance(listed, list) else []


class _RedisIndex:
    """Entries as msgpack strings, changed in a ``WATCH``/``MULTI`` transaction."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, key: str) -> list[str]:
        raw = self.client.get(key)
        return [] if raw is None else _session_ids(decode(raw))

    def change(self, key: str, edit: Callable[[list[str]], list[str]], ttl: int) -> None:
        def run(pipe: Any) -> None:
            raw = pipe.get(key)
            ids = edit([] if raw is None else _session_ids(decode(raw)))
            pipe.multi()
            if ids:
                pipe.set(key, _ENCODE({ENTRY_KEY: ids}), ex=ttl)
            else:
                pipe.delete(key)

        self.client.transaction(run, key)


class _CacheIndex:
    """Entries as values of a cachelib store; changed under the folder's lock for the file store."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if isinstance(self.cache, FileSystemCache):
            with folder_lock(self.cache):
                yield
        else:  # another cachelib store: one read and one write, not one step
            yield

    def read(self, key: str) -> list[str]:
        return _session_ids(self.cache.get(key))

    def change(self, key: str, edit: Callable[[list[str]], list[str]], ttl: int) -> None:
        with self._locked():
            ids = edit(_session_ids(self.cache.get(key)))
            if ids:
                self.cache.set(key, {ENTRY_KEY: ids}, timeout=ttl)
            else:
                self.cache.delete(key)


def _store(app: Flask) -> tuple[ServerSideSessionInterface, _Index] | None:
    """``app``'s session interface and the index in its store, or ``None`` when it cannot hold one."""
    interface = app.session_interface
    if not isinstance(interface, ServerSideSessionInterface):
        return None
    index = _index_of(interface)
    return None if index is None else (interface, index)


def _index_of(interface: ServerSideSessionInterface) -> _Index | None:
    try:
        from flask_session.redis import RedisSessionInterface
    except ImportError:  # the redis package is not installed
        RedisSessionInterface = None  # noqa: N806
    if RedisSessionInterface is not None and isinstance(interface, RedisSessionInterface):
        return _RedisIndex(interface.client)
    cache = getattr(interface, "cache", None)
    if isinstance(cache, BaseCache):
        return _CacheIndex(cache)
    return None


def check_store(app: App) -> None:
    """Log, once at start-up, that ``app``'s session store cannot hold the index, if so."""
    if isinstance(app, Flask) and _store(app) is not None:
        return
    logger.warning(
        "Front-channel logout is unavailable with the session interface %s: its sessions cannot be "
        "found without their cookie (use Flask-Session's redis or cachelib store). The front-channel "
        "logout URL answers without ending any session.",
        type(getattr(app, "session_interface", None)).__name__,
    )


def _key(issuer: str | None, sid: str, kind: str) -> str:
    named = "" if kind == SID_ONLY_KIND else issuer or ""
    digest = hashlib.sha256(f"{kind}\n{named}\n{sid}".encode()).hexdigest()
    return INDEX_PREFIX + digest


def _lifetime(app: Flask) -> int:
    return max(1, int(app.permanent_session_lifetime.total_seconds()))


def _listed(app: Flask, session: SessionMixin) -> tuple[_Index, str, str, str] | None:
    """The index, the provider session (``iss``, ``sid``) and the session id under which
    ``session`` is listed; ``None`` when the store holds no index or the session names no
    provider session."""
    store = _store(app)
    ended_by = session_data.provider_session(session)
    session_id = getattr(session, "sid", None)
    if store is None or ended_by is None or not isinstance(session_id, str):
        return None
    return store[1], *ended_by, session_id


def remember(app: Flask, session: SessionMixin, kind: str) -> None:
    """List ``session``, just signed in (its id already renewed), under the provider session
    its id token names; nothing when it names none or the store cannot hold the index.

    :param kind: the authority's kind (``entra``, ``b2c``, ``oidc``).
    """
    listed = _listed(app, session)
    if listed is None:
        return
    index, issuer, sid, session_id = listed
    if len(sid) > MAX_SID or len(issuer) > MAX_ISSUER:
        return  # no front-channel request could name it

    def add(ids: list[str]) -> list[str]:
        # Ids of sessions renewed since stay until the entry is used or expires: one still
        # being signed in is not in the store yet either, so the store cannot tell them apart.
        return [*(i for i in ids if i != session_id), session_id][-MAX_SESSIONS:]

    index.change(_key(issuer, sid, kind), add, _lifetime(app))


def forget(app: Flask, session: SessionMixin, kind: str) -> None:
    """Take ``session``, about to be signed out, off its provider session's entry."""
    listed = _listed(app, session)
    if listed is None:
        return
    index, issuer, sid, session_id = listed
    key = _key(issuer, sid, kind)
    index.change(key, lambda ids: [i for i in ids if i != session_id], _lifetime(app))


def parse(args: Any, kind: str) -> tuple[str | None, str]:
    """The ``iss`` and ``sid`` of a front-channel request's query.

    :raises BadRequest: one is missing (``iss`` may be, for Entra), repeated, too long,
        or holds control characters.
    """
    values: dict[str, str | None] = {}
    for name, limit in (("iss", MAX_ISSUER), ("sid", MAX_SID)):
        given = args.getlist(name)
        if len(given) > 1:
            raise BadRequest(f"The sign-out request carries more than one {name}.")
        value = given[0] if given else None
        if value is not None and (not value or len(value) > limit or not value.isprintable()):
            raise BadRequest(f"The sign-out request's {name} is not valid.")
        values[name] = value
    sid = values["sid"]
    if sid is None or (values["iss"] is None and kind != SID_ONLY_KIND):
        raise BadRequest("The sign-out request needs the iss and sid of the session that ended.")
    return values["iss"], sid


def end(app: Flask, issuer: str | None, sid: str, kind: str) -> int:
    """End every session of this app signed in from the provider session ``sid`` of
    ``issuer`` (``None``: not sent, see the module's text).

    :return: how many sessions ended (for the log; never for the answer).
    """
    store = _store(app)
    if store is None:
        return 0
    interface, index = store
    key = _key(issuer, sid, kind)
    gone: set[str] = set()
    ended = 0
    for session_id in index.read(key):
        store_id = interface._get_store_id(session_id)
        data = interface._retrieve_session_data(store_id)
        named = session_data.provider_session(data) if isinstance(data, dict) else None
        if named is not None and (named[1] != sid or (issuer is not None and named[0] != issuer)):
            continue  # another provider session's (an Entra request naming another issuer): left listed
        if named is not None:
            interface._delete_session(store_id)
            ended += 1
        gone.add(session_id)  # ended, or signed out or renewed before
    if gone:
        index.change(key, lambda ids: [i for i in ids if i not in gone], _lifetime(app))
    return ended
