"""Flask's ``SECRET_KEY`` derived from a Key Vault key, with the app's managed identity.

The deployment (``infra/``) creates an RSA key in Key Vault: Key Vault makes the
key material and never lets it out, so no secret is ever written in a template,
a parameter, an output or an app setting. The app asks Key Vault to sign one
fixed text with that key (RSASSA-PKCS1-v1_5 signatures are deterministic) and
hashes the signature into ``SECRET_KEY``: every worker of every instance gets the
same value, and only what can use the key (the app's managed identity, given
"Key Vault Crypto User") can compute it. Rotating the key rotates ``SECRET_KEY``
at the next restart.

The managed identity's token comes from MSAL's managed-identity client, which
reads App Service's ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

__all__ = ["KEY_VAULT_RESOURCE", "SecretKeyUnavailable", "secret_key_from_vault_key"]

logger = logging.getLogger(__name__)

#: The resource a managed identity asks a Key Vault token for.
KEY_VAULT_RESOURCE = "https://vault.azure.net"
#: Key Vault's data-plane API version for ``sign``.
API_VERSION = "7.4"
#: The text signed; changing it changes every derived key.
LABEL = b"identity_flask sample: Flask SECRET_KEY, version 1"
#: RSA 2048 gives 256-byte signatures: a shorter answer is not a signature.
MIN_SIGNATURE_BYTES = 256


class SecretKeyUnavailable(RuntimeError):
    """``SECRET_KEY`` could not be derived: the message says what to check."""


class _TimeoutSession(requests.Session):
    """A session whose every request has a timeout (MSAL's managed-identity calls set none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_key_uri(key_uri: str) -> str:
    """The key's URI without a trailing slash.

    :raises ValueError: not ``https://<vault>/keys/<name>[/<version>]``; the
        managed identity's token is sent there, so nothing else is accepted.
    """
    parts = urlsplit(key_uri.strip())
    segments = [segment for segment in parts.path.split("/") if segment]
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or len(segments) not in (2, 3)
        or segments[0] != "keys"
    ):
        raise ValueError(
            "SECRET_KEY_VAULT_KEY must be a Key Vault key's URI, "
            "https://<vault>.vault.azure.net/keys/<name> (optionally /<version>)."
        )
    return key_uri.strip().rstrip("/")


def _managed_identity_token(client_id: str | None, session: requests.Session) -> str:
    identity: Any = (
        msal.UserAssignedManagedIdentity(client_id=client_id) if client_id else msal.SystemAssignedManagedIdentity()
    )
    client = msal.ManagedIdentityClient(identity, http_client=session)
    try:
        answer = client.acquire_token_for_client(resource=KEY_VAULT_RESOURCE)
    except (requests.RequestException, ValueError) as error:
        raise SecretKeyUnavailable(
            f"SECRET_KEY_VAULT_KEY: the managed identity's endpoint did not answer ({type(error).__name__})."
        ) from None
    token = answer.get("access_token")
    if not token:
        raise SecretKeyUnavailable(
            "SECRET_KEY_VAULT_KEY: no token for Key Vault from the managed identity "
            f"({answer.get('error', 'no error code')}); check AZURE_CLIENT_ID."
        )
    return str(token)


def secret_key_from_vault_key(key_uri: str, *, client_id: str | None, timeout: float = 10.0) -> str:
    """Derive ``SECRET_KEY`` from the Key Vault key at ``key_uri``.

    :param key_uri: ``https://<vault>.vault.azure.net/keys/<name>``: the key's
        current version signs, so a rotated key gives a new ``SECRET_KEY``.
    :param client_id: the user-assigned managed identity's client id, or
        ``None`` for the system-assigned one.
    :param timeout: seconds for each HTTP request.
    :returns: 64 hexadecimal digits, the same for every process that asks.
    :raises ValueError: ``key_uri`` is not a Key Vault key's URI.
    :raises SecretKeyUnavailable: no token, or Key Vault refused or did not
        answer; the message names the setting and the status, never a token.
    """
    uri = check_key_uri(key_uri)
    with _TimeoutSession(timeout) as session:
        token = _managed_identity_token(client_id, session)
        try:
            response = session.post(
                f"{uri}/sign",
                params={"api-version": API_VERSION},
                json={"alg": "RS256", "value": _b64url(hashlib.sha256(LABEL).digest())},
                headers={"Authorization": f"Bearer {token}"},
            )
        except requests.RequestException as error:
            raise SecretKeyUnavailable(
                f"SECRET_KEY_VAULT_KEY: Key Vault did not answer at {urlsplit(uri).hostname} ({type(error).__name__})."
            ) from None
    if response.status_code != 200:
        try:
            code = str(response.json().get("error", {}).get("code", ""))[:80]
        except (ValueError, AttributeError):
            code = ""
        hint = ""
        if response.status_code in (401, 403):
            hint = " The managed identity needs the role Key Vault Crypto User on the vault."
        raise SecretKeyUnavailable(
            f"SECRET_KEY_VAULT_KEY: Key Vault refused to sign (HTTP {response.status_code}"
            f"{' ' + code if code else ''}).{hint}"
        )
    try:
        signature = _b64url_decode(str(response.json()["value"]))
    except (ValueError, KeyError, TypeError):
        signature = b""
    if len(signature) < MIN_SIGNATURE_BYTES:
        raise SecretKeyUnavailable("SECRET_KEY_VAULT_KEY: Key Vault's answer holds no RSA signature.")
    logger.info("SECRET_KEY derived from the Key Vault key at %s", urlsplit(uri).hostname)
    return hashlib.sha256(LABEL + b"\0" + signature).hexdigest()
