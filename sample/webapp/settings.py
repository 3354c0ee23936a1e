"""The sample's configuration, read from environment variables.

Every ``IDENTITY_*`` variable is copied into ``app.config`` for identity_flask
(``IDENTITY_CLIENT_ID``, ``IDENTITY_AUTHORITY``, ...): the sign-in of the pages
and the tokens the web API accepts read the same ones. The sample's own
settings sit beside them. ``sample/.env.sample`` documents each one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

#: Microsoft Graph's "who am I": works with any Entra ID work or school account.
DEFAULT_API_ENDPOINT = "https://graph.microsoft.com/v1.0/me"
DEFAULT_API_SCOPES = "User.Read"
#: The callback path. As a bare path, the full redirect URI is built from each
#: request, so it follows the host the app is served on (App Service included).
DEFAULT_REDIRECT_PATH = "/getAToken"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def as_bool(name: str, value: str) -> bool:
    """Read ``1/true/yes/on`` or ``0/false/no/off``.

    :raises ValueError: naming the variable, for anything else.
    """
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}.")


def as_list(value: str) -> list[str]:
    """Split a space- or comma-separated list."""
    return value.replace(",", " ").split()


def as_credential(value: str) -> str | dict[str, Any]:
    """A client secret as it is, or a certificate given as JSON in the shape MSAL takes:
    ``{"private_key_pfx_path": "...", "passphrase": "..."}``."""
    if value.lstrip().startswith("{"):
        certificate: dict[str, Any] = json.loads(value)
        return certificate
    return value


def _identity_value(name: str, value: str) -> Any:
    # identity_flask reads text itself ("false", "", ...); only a certificate needs help.
    if name == "IDENTITY_CLIENT_CREDENTIAL":
        return as_credential(value)
    return value


def web_api_client_id(environ: Mapping[str, str]) -> str | None:
    """The client id of the app registration that exposes the sample's web API:
    ``WEB_API_CLIENT_ID``, else ``IDENTITY_CLIENT_ID`` (one registration for both)."""
    return environ.get("WEB_API_CLIENT_ID") or environ.get("IDENTITY_CLIENT_ID") or None


def web_api_app_id_uri(environ: Mapping[str, str]) -> str | None:
    """The web API's Application ID URI: ``IDENTITY_APP_ID_URI``, else ``api://<its client id>``."""
    client_id = web_api_client_id(environ)
    uri = environ.get("IDENTITY_APP_ID_URI") or (f"api://{client_id}" if client_id else "")
    return uri.rstrip("/") or None


def redis_entra_settings(environ: Mapping[str, str], redis_url: str | None) -> dict[str, Any]:
    """``REDIS_ENTRA_AUTH`` and the managed identity it signs in to Redis with.

    ``AZURE_CLIENT_ID`` names a user-assigned managed identity by its client id
    (the convention of Azure's SDKs); unset, the system-assigned one is used.

    :raises ValueError: Entra sign-in without ``REDIS_URL``, or with a password in
        it (two ways to sign in, one of them a secret); the message names the variable.
    """
    flag = environ.get("REDIS_ENTRA_AUTH", "").strip()
    entra = as_bool("REDIS_ENTRA_AUTH", flag) if flag else False
    if entra and not redis_url:
        raise ValueError("REDIS_ENTRA_AUTH needs REDIS_URL, e.g. rediss://<name>.redis.cache.windows.net:6380/0.")
    if entra and redis_url and urlsplit(redis_url).password:
        raise ValueError("REDIS_ENTRA_AUTH signs in with a token: remove the password from REDIS_URL.")
    return {"REDIS_ENTRA_AUTH": entra, "AZURE_CLIENT_ID": (environ.get("AZURE_CLIENT_ID") or "").strip() or None}


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Build the app's configuration from ``environ``.

    :param environ: usually :data:`os.environ`.
    :raises ValueError: a variable holds a value it cannot hold; the message names it.
    """
    config: dict[str, Any] = {
        name: _identity_value(name, value) for name, value in environ.items() if name.startswith("IDENTITY_")
    }
    if not config.get("IDENTITY_REDIRECT_URI"):
        config["IDENTITY_REDIRECT_URI"] = DEFAULT_REDIRECT_PATH

    config["API_ENDPOINT"] = environ.get("API_ENDPOINT") or DEFAULT_API_ENDPOINT
    config["API_SCOPES"] = as_list(environ.get("API_SCOPES") or DEFAULT_API_SCOPES)

    # The sample's own web API (/api/...): the app registration that exposes it, by
    # default the one users sign in with. Its Application ID URI prefixes its scopes.
    config["WEB_API_CLIENT_ID"] = web_api_client_id(environ)
    config["WEB_API_APP_ID_URI"] = web_api_app_id_uri(environ)
    # Where the to-do page finds that API; unset, this app itself.
    config["WEB_API_URL"] = (environ.get("WEB_API_URL") or "").rstrip("/") or None
    config["REDIS_URL"] = environ.get("REDIS_URL") or None
    # Sign in to Redis with a Microsoft Entra token of the app's managed identity
    # (Azure Cache for Redis with access keys disabled) instead of a password.
    config.update(redis_entra_settings(environ, config["REDIS_URL"]))

    # The key encrypts pending sign-ins (identity_flask keeps them in a cookie). Every
    # worker and instance must share it; a single process may do with a random one.
    # On Azure, it is derived from a Key Vault key that never leaves the vault
    # (SECRET_KEY_VAULT_KEY, see webapp/vault.py): the app then builds it at start-up.
    secret_key = environ.get("SECRET_KEY") or None
    vault_key = environ.get("SECRET_KEY_VAULT_KEY") or None
    if secret_key and vault_key:
        raise ValueError("Set SECRET_KEY or SECRET_KEY_VAULT_KEY, not both.")
    config["SECRET_KEY_VAULT_KEY"] = vault_key
    config["SECRET_KEY"] = secret_key or (None if vault_key else secrets.token_hex(32))

    # A bare-path redirect URI takes its host from the request, so the hosts the app
    # answers to are pinned: TRUSTED_HOSTS if given, else App Service's own host name,
    # else the loopback names a developer's browser uses.
    hosts = as_list(environ.get("TRUSTED_HOSTS") or "")
    if not hosts and environ.get("WEBSITE_HOSTNAME"):
        hosts = [environ["WEBSITE_HOSTNAME"]]
    config["TRUSTED_HOSTS"] = hosts or ["localhost", "127.0.0.1"]

    behind_proxy = environ.get("BEHIND_PROXY", "").strip()
    # App Service sets WEBSITE_HOSTNAME on every app; its front end ends TLS.
    config["BEHIND_PROXY"] = as_bool("BEHIND_PROXY", behind_proxy) if behind_proxy else "WEBSITE_HOSTNAME" in environ
    return config
