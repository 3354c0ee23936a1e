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

from . import api, settings, vault, views
from .auth import auth
from .health import HealthCheck

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
    is right for one process on one machine only. With ``REDIS_ENTRA_AUTH``, the
    app signs in to Redis with its managed identity's Microsoft Entra tokens
    (Azure Cache for Redis with access keys disabled); the URL holds no password.
    """
    url = app.config.get("REDIS_URL")
    if not url or app.config.get("SESSION_TYPE"):
        return
    import redis

    options: dict[str, Any] = {}
    if app.config.get("REDIS_ENTRA_AUTH"):
        options["credential_provider"] = redis_entra_credentials(app.config.get("AZURE_CLIENT_ID"))
    app.config["SESSION_TYPE"] = "redis"
    # Azure Cache for Redis drops connections idle for 10 minutes: check before reuse.
    app.config["SESSION_REDIS"] = redis.from_url(url, health_check_interval=60, socket_timeout=5, **options)


#: The resource a managed identity asks a token for Azure Cache for Redis (and Azure Managed Redis) for.
REDIS_RESOURCE = "https://redis.azure.com/"


def redis_entra_credentials(client_id: str | None) -> Any:
    """A redis-py credential provider that signs in with the managed identity's Entra tokens.

    redis-entraid asks the managed identity for a token for Redis, sends its ``oid``
    as the user name and the token as the password, and renews it before it expires.

    :param client_id: a user-assigned managed identity's client id (``AZURE_CLIENT_ID``),
        or ``None`` for the system-assigned identity.
    """
    from redis_entraid.cred_provider import ManagedIdentityIdType, ManagedIdentityType, create_from_managed_identity

    if client_id:
        return create_from_managed_identity(
            identity_type=ManagedIdentityType.USER_ASSIGNED,
            resource=REDIS_RESOURCE,
            id_type=ManagedIdentityIdType.CLIENT_ID,
            id_value=client_id,
        )
    return create_from_managed_identity(identity_type=ManagedIdentityType.SYSTEM_ASSIGNED, resource=REDIS_RESOURCE)


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
    :raises ValueError: a variable holds a value it cannot hold; the message names it.
    :raises webapp.vault.SecretKeyUnavailable: ``SECRET_KEY_VAULT_KEY`` is set and
        Key Vault or the managed identity did not give the key.
    """
    if environ is None:
        _read_dotenv()
        environ = os.environ
    app = Flask(__name__)
    app.config.update(settings.from_environ(environ))
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY") and app.config.get("SECRET_KEY_VAULT_KEY"):
        app.config["SECRET_KEY"] = vault.secret_key_from_vault_key(
            app.config["SECRET_KEY_VAULT_KEY"], client_id=app.config.get("AZURE_CLIENT_ID")
        )

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
    # Outermost: App Service's health check never reaches Flask, its session or its host check.
    app.wsgi_app = HealthCheck(app.wsgi_app)  # type: ignore[method-assign]
    return app
