"""A sample Flask app that signs users in with identity_flask, calls APIs for them,
and serves a web API of its own that takes bearer access tokens.

Build it with :func:`create_app`; ``sample/app.py`` does that for gunicorn,
``flask run`` and App Service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from identity_flask import ApiAuth, RedactSecrets

from . import api, settings, views
from .auth import auth

__all__ = ["create_app"]

DOTENV = Path(__file__).resolve().parent.parent / ".env"


def _read_dotenv() -> None:
    """Load ``sample/.env`` into the environment, if python-dotenv is installed.

    Variables already set win: App Service app settings are never overridden.
    """
    try:
        from dotenv import load_dotenv
    except ImportError:
        return
    if DOTENV.is_file():
        load_dotenv(DOTENV, override=False)


def _configure_sessions(app: Flask) -> None:
    """Keep sessions in Redis when ``REDIS_URL`` is set.

    Every instance and worker then sees the same sessions. Without it,
    identity_flask's default file store in the instance folder applies, which
    is right for one process on one machine only.
    """
    url = app.config.get("REDIS_URL")
    if not url or app.config.get("SESSION_TYPE"):
        return
    import redis

    app.config["SESSION_TYPE"] = "redis"
    # Azure Cache for Redis drops connections idle for 10 minutes: check before reuse.
    app.config["SESSION_REDIS"] = redis.from_url(url, health_check_interval=60, socket_timeout=5)


def _redact_server_logs() -> None:
    """Keep authorization codes out of the server's request log.

    werkzeug (``flask run``) and gunicorn log each request's URL, the
    callback's with its code in the query. The app owns those logs, so it is
    the app that filters them, on their loggers and on their handlers.
    """
    for name in ("werkzeug", "gunicorn.access", "gunicorn.error"):
        server_logger = logging.getLogger(name)
        for target in (server_logger, *server_logger.handlers):
            if not any(isinstance(f, RedactSecrets) for f in target.filters):
                target.addFilter(RedactSecrets())


def create_app(config: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None) -> Flask:
    """Build the sample app.

    :param config: values that override what the environment says (tests use it).
    :param environ: the variables to read; by default :data:`os.environ`, after
        loading ``sample/.env`` when it exists.
    :raises identity_flask.ConfigurationError: a sign-in setting is missing;
        the message names the variable to set.
    """
    if environ is None:
        _read_dotenv()
        environ = os.environ
    app = Flask(__name__)
    app.config.update(settings.from_environ(environ))
    if config:
        app.config.update(config)

    if app.config["BEHIND_PROXY"]:
        # TLS ends at the proxy (App Service's front end), which forwards plain http
        # with X-Forwarded-Proto/-Host. Without this the redirect URI and every
        # external URL would be http://, which Entra ID refuses (AADSTS50011). Only
        # behind a proxy: these headers are trusted as they come.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
        app.config["SESSION_COOKIE_SECURE"] = True

    _configure_sessions(app)
    _redact_server_logs()
    auth.init_app(app)
    # The web API takes tokens issued for its own registration (WEB_API_CLIENT_ID) by the
    # authority users sign in at; every other setting is the IDENTITY_* one the pages use.
    api_auth = ApiAuth(app, client_id=app.config["WEB_API_CLIENT_ID"], app_id_uri=app.config["WEB_API_APP_ID_URI"])
    todo_scope = f"{app.config['WEB_API_APP_ID_URI']}/{api.TODO_SCOPE}"
    app.register_blueprint(views.make_blueprint(app.config["API_SCOPES"], [todo_scope]))
    app.register_blueprint(api.make_blueprint(api_auth))
    return app
