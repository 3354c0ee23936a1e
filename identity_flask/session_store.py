"""Choosing the server-side session store that holds each user's token cache.

A session interface the app configured itself is used untouched. Otherwise
Flask-Session is set up from ``SESSION_TYPE``, or, when that is unset, with a
file store in the app's instance folder. Flask's signed-cookie session is
refused: a token cache does not fit in a cookie, and must not travel in one.
"""

from __future__ import annotations

import logging
import os

from flask import Flask
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask.typing import ResponseReturnValue
from flask_session import Session
from flask_session.base import ServerSideSessionInterface
from werkzeug.exceptions import InternalServerError

from .errors import ConfigurationError, SessionStoreUnavailable
from .safe_store import SessionFileCache, make_safe

logger = logging.getLogger(__name__)

COOKIE_SESSION_TYPES = ("null", "cookie", "securecookie")

_COOKIE_REFUSAL = (
    "identity_flask keeps each user's token cache in the session, and Flask's "
    "signed-cookie session would send it to the browser: it does not fit in a "
    "cookie (about 4 KB) and tokens must not leave the server. Configure a "
    "server-side store through Flask-Session instead, e.g. SESSION_TYPE = 'redis' "
    "with SESSION_REDIS, or leave SESSION_TYPE unset for a file store in the "
    "instance folder."
)


def setup_sessions(app: Flask, *, form_post: bool, secure_redirect: bool) -> None:
    """Make sure ``app`` has a server-side session fit for token caches.

    :param form_post: the provider posts the response cross-site, which needs
        ``SESSION_COOKIE_SAMESITE = "None"`` and a secure cookie.
    :param secure_redirect: the redirect URI is ``https``, so the session
        cookie is marked secure unless the app chose otherwise.
    """
    interface = app.session_interface
    if isinstance(interface, ServerSideSessionInterface):
        logger.debug("Using the app's own Flask-Session interface %s", type(interface).__name__)
    elif type(interface) is SecureCookieSessionInterface:
        session_type = app.config.get("SESSION_TYPE")
        if isinstance(session_type, str) and session_type.lower() in COOKIE_SESSION_TYPES:
            raise ConfigurationError(f"SESSION_TYPE = {session_type!r} is not supported: " + _COOKIE_REFUSAL)
        if not session_type or session_type == "filesystem":
            # Flask-Session's "filesystem" type is deprecated in favour of this same
            # cachelib store; an unset type gets it too, in the instance folder.
            directory = app.config.get("SESSION_FILE_DIR") or os.path.join(app.instance_path, "identity_sessions")
            app.config["SESSION_TYPE"] = "cachelib"
            app.config["SESSION_CACHELIB"] = SessionFileCache(
                directory,
                threshold=app.config.get("SESSION_FILE_THRESHOLD", 0),
                mode=app.config.get("SESSION_FILE_MODE", 0o600),
            )
        if isinstance(session_type, str) and session_type.lower() == "redis":
            try:
                import redis  # noqa: F401
            except ImportError:
                raise ConfigurationError(
                    "SESSION_TYPE = 'redis' needs the redis package: pip install identity-flask[redis]"
                ) from None
        Session(app)
        make_safe(app.session_interface)
    elif isinstance(interface, SecureCookieSessionInterface):
        name = type(interface).__name__
        raise ConfigurationError(f"The app's session interface {name} is cookie-based. " + _COOKIE_REFUSAL)
    else:
        logger.debug("Using the app's own session interface %s", type(interface).__name__)

    if isinstance(app.session_interface, ServerSideSessionInterface):
        # Flask-Session re-saves every request's copy of the session when this is on, so a
        # slow request that started before /login finishes after it and erases the pending
        # sign-in (the "state mismatch" seen with several workers). Off, only requests that
        # change the session write it; its lifetime then counts from the last change.
        app.config["SESSION_REFRESH_EACH_REQUEST"] = False

    if form_post:
        if str(app.config.get("SESSION_COOKIE_SAMESITE")) != "None" or not app.config.get("SESSION_COOKIE_SECURE"):
            raise ConfigurationError(
                "response_mode='form_post' makes the provider POST the response from its own "
                "site, and browsers send a SameSite=Lax cookie only with same-site POSTs, so the "
                "session would be missing at the callback. Set SESSION_COOKIE_SAMESITE = 'None' "
                "and SESSION_COOKIE_SECURE = True (which needs https), or use the default "
                "response_mode='query'."
            )
    elif app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if secure_redirect and not app.config.get("SESSION_COOKIE_SECURE"):
        app.config["SESSION_COOKIE_SECURE"] = True


def is_store_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the session store cannot serve: unreachable, too slow,
    full (``maxmemory`` reached with no eviction), or read-only (a replica during
    a failover)."""
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import OutOfMemoryError, ReadOnlyError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:
        return False
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ReadOnlyError))


def store_outage_page(error: InternalServerError) -> ResponseReturnValue:
    """Answer a request the session store failed with a 503 page instead of a 500.

    The store is read before any view runs and written after, so its failures
    reach Flask as unhandled errors; everything else keeps Flask's 500.
    """
    if not is_store_outage(error.original_exception):
        return error
    logger.error("Session store unavailable: %s", type(error.original_exception).__name__)
    return SessionStoreUnavailable(
        "This site cannot reach its session store right now. Please try again in a moment."
    ).get_response()


def regenerate(app: Flask, session: SessionMixin) -> None:
    """Give the session a new id, keeping its content (against session fixation)."""
    regenerate_id = getattr(app.session_interface, "regenerate", None)
    if regenerate_id is None:
        logger.debug("Session interface %s cannot regenerate ids", type(app.session_interface).__name__)
        return
    regenerate_id(session)
