"""Checking the bearer access tokens a web API is called with.

An access token from Microsoft Entra ID, External ID or B2C is a JWT signed by
one of the keys the authority publishes (its ``jwks_uri``, named in its OpenID
configuration). It is accepted when:

- its signature verifies with the published key its header names (``kid``),
  with an asymmetric algorithm that key is for (never ``none`` or HMAC);
- ``iss`` is the authority's issuer (``{tenantid}`` replaced by the token's
  ``tid`` for multi-tenant authorities), or the v1 issuer
  ``https://sts.windows.net/<tid>/`` of the same tenant;
- ``aud`` is the API's client id or its Application ID URI;
- ``exp``, ``nbf`` and ``iat`` are present and hold, within the clock leeway;
- the tenant and the calling application are allowed, when lists are set.

Entra's access tokens are not RFC 9068 tokens: they carry ``typ: JWT``, and
``scp`` (delegated) or ``roles`` (app-only) rather than ``scope``; nothing
here asks for the RFC 9068 shape.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import requests

from .client import _discovery_document, _json_object, _TimeoutSession, provider_calls
from .config import ApiSettings, Authority
from .errors import ProviderUnavailable

logger = logging.getLogger(__name__)

#: A token longer than this is refused unread (Entra's are 1 to 3 KB; group-heavy ones below 8 KB).
MAX_TOKEN_LENGTH = 16 * 1024
#: Asymmetric algorithms a published key may be used with; everything else is refused.
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
#: Seconds between refetches of the signing keys caused by tokens naming an unknown key.
REFETCH_INTERVAL = 60.0
#: Seconds a set of signing keys is used before it is fetched again.
KEYS_MAX_AGE = 24 * 3600.0
#: Seconds during which a failed fetch is not retried (requests get a 503 at once).
FAILURE_BACKOFF = 5.0


class Refused(Exception):
    """The token is not acceptable; ``reason`` says why, in words safe to send back.

    :param reason: never holds any part of the token.
    """

    def __init__(self, reason: str, *, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error = error


def discovery_url(authority: Authority) -> str:
    """Where ``authority`` publishes its OpenID configuration (v2 endpoints for Microsoft's)."""
    if authority.kind == "oidc":
        return authority.url + "/.well-known/openid-configuration"
    return authority.url + "/v2.0/.well-known/openid-configuration"


class KeySet:
    """The authority's issuer and signing keys, fetched once and kept.

    A token naming a key id not in the set makes one refetch at once (the
    provider may just have rotated a new key in); after that, tokens naming
    unknown keys wait :data:`REFETCH_INTERVAL` for the next refetch, however many
    there are and whatever keys they name, so a flood of forged tokens costs the
    provider one request a minute at most.

    :param clock: seconds, monotonic; replaceable in tests.
    """

    def __init__(self, url: str, http: requests.Session, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.http = http
        self.clock = clock
        self.issuer: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = threading.Lock()
        self._fetched_at = -math.inf
        self._refetched_for_unknown_at = -math.inf
        self._failed_at = -math.inf
        #: Fetches made (a number for tests and benchmarks).
        self.fetches = 0

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The published key named ``kid``, or ``None``.

        :raises ProviderUnavailable: no keys could be had from the provider at all.
        :raises ProviderError: the provider answered with something that is not its keys.
        """
        key = self._keys.get(kid)
        now = self.clock()
        if key is not None and now - self._fetched_at < KEYS_MAX_AGE:
            return key
        if key is not None:
            # Held but old: one request refetches; the others go on with the key they
            # have rather than wait behind a provider that may be slow.
            if not self._lock.acquire(blocking=False):
                return key
        else:
            self._lock.acquire()
        try:
            key = self._keys.get(kid)
            now = self.clock()
            if key is not None and now - self._fetched_at < KEYS_MAX_AGE:
                return key  # fetched by another request while this one waited
            if key is None and self._keys and now - self._refetched_for_unknown_at < REFETCH_INTERVAL:
                return None
            if now - self._failed_at < FAILURE_BACKOFF:
                if self._keys:
                    return key
                raise ProviderUnavailable("The sign-in service could not be reached. Please try again in a moment.")
            if key is None and self._keys:
                self._refetched_for_unknown_at = now
            try:
                self._fetch()
            except Exception:
                self._failed_at = self.clock()
                if key is not None:
                    logger.warning("Signing keys could not be refreshed; the ones held are kept")
                    return key
                raise
            return self._keys.get(kid)
        finally:
            self._lock.release()

    def issuer_now(self) -> str:
        """The authority's issuer, known whenever a key is (both come from one fetch)."""
        if self.issuer is None:
            raise ProviderUnavailable("The sign-in service could not be reached. Please try again in a moment.")
        return self.issuer

    def _fetch(self) -> None:
        self.fetches += 1
        with provider_calls("reading its signing keys"):
            document = _discovery_document(self.http.get(self.url))
            issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
            if not isinstance(issuer, str) or not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
                logger.warning("Discovery at %s names no issuer or https jwks_uri", self.url)
                raise ProviderUnavailable("The sign-in service's configuration could not be read.")
            response = self.http.get(jwks_uri)
            if response.status_code != 200:
                logger.warning("The signing keys at %s answered %s", jwks_uri, response.status_code)
                raise ProviderUnavailable("The sign-in service's signing keys could not be read.")
            published = _json_object(response).get("keys")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in published if isinstance(published, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            if key.algorithm_name in ALGORITHMS:
                keys[entry["kid"]] = key
        if not keys:
            logger.warning("The signing keys at %s hold no usable key", jwks_uri)
            raise ProviderUnavailable("The sign-in service's signing keys could not be read.")
        self.issuer = issuer
        self._keys = keys
        self._fetched_at = self.clock()


class BearerValidator:
    """Checks access tokens for one API (see the module's documentation)."""

    def __init__(self, settings: ApiSettings, http: requests.Session | None = None) -> None:
        self.settings = settings
        self.keys = KeySet(discovery_url(settings.authority), http or _TimeoutSession(settings.timeout))
        self.audiences = frozenset({settings.client_id, settings.app_id_uri})

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of ``token``, once it is found acceptable.

        The token is read once: its three parts split and decoded here, the
        signature checked with the published key's own algorithm, then the
        claims.

        :raises Refused: with the reason, never quoting the token.
        :raises ProviderUnavailable: the signing keys could not be had.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise Refused("The access token is too long.")
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
            raise Refused("The access token is not a signed JWT.")
        header_part, payload_part, signature_part = parts
        try:
            header = json.loads(_b64decode(header_part))
            payload = _b64decode(payload_part)
            signature = _b64decode(signature_part)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise Refused("The access token is not a signed JWT.") from None
        if not isinstance(header, dict):
            raise Refused("The access token is not a signed JWT.")
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise Refused("The access token is not signed with an algorithm this API accepts.")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise Refused("The access token names no signing key.")
        key = self.keys.key(kid)
        if key is None:
            raise Refused("The access token is not signed by a key of the sign-in service.")
        if key.algorithm_name != algorithm:
            raise Refused("The access token is not signed with the algorithm of its key.")
        signing_input = f"{header_part}.{payload_part}".encode()
        if not signature or not key.Algorithm.verify(signing_input, key.key, signature):
            raise Refused("The access token's signature does not verify.")
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Refused("The access token's claims are not readable.") from None
        if not isinstance(claims, dict):
            raise Refused("The access token's claims are not readable.")
        if "nonce" in claims or not (claims.get("azp") or claims.get("appid")):
            # Every access token names the client it was issued to (azp, or appid in v1);
            # an id token for an app of the same client id never does, and carries a nonce.
            raise Refused("The token is not an access token.")
        self._check_audience(claims)
        self._check_times(claims)
        self._check_issuer(claims)
        self._check_caller(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = time.time()
        leeway = self.settings.clock_leeway
        if _seconds(claims, "exp") <= now - leeway:
            raise Refused("The access token expired.")
        if _seconds(claims, "nbf") > now + leeway or _seconds(claims, "iat") > now + leeway:
            raise Refused("The access token is not valid yet.")

    def _check_audience(self, claims: dict[str, Any]) -> None:
        audience = claims.get("aud")
        if audience is None:
            raise Refused("The access token has no 'aud' claim.")
        named = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if not any(isinstance(a, str) and a in self.audiences for a in named):
            raise Refused("The access token is not for this API.")

    def _check_issuer(self, claims: dict[str, Any]) -> None:
        issuer = claims.get("iss")
        tenant = claims.get("tid")
        if not isinstance(tenant, str) or not _is_guid(tenant):
            tenant = None
        expected = self.keys.issuer_now()
        if "{tenantid}" in expected:
            if tenant is None:
                raise Refused("The access token names no tenant.")
            expected = expected.replace("{tenantid}", tenant)
        v1 = f"https://sts.windows.net/{tenant}/" if tenant and expected.endswith(f"/{tenant}/v2.0") else None
        if issuer != expected and (v1 is None or issuer != v1):
            raise Refused("The access token was not issued by this API's authority.")
        allowed = self.settings.allowed_tenants
        if allowed and (tenant is None or tenant.lower() not in allowed):
            raise Refused("The access token is from a tenant this API does not accept.")

    def _check_caller(self, claims: dict[str, Any]) -> None:
        allowed = self.settings.allowed_client_apps
        if not allowed:
            return
        caller = claims.get("azp") or claims.get("appid")
        if caller not in allowed:
            raise Refused(
                "The application calling this API is not allowed to.", status=403, error="unauthorized_client"
            )


#: One part of a compact JWT: base64url without padding.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _seconds(claims: dict[str, Any], name: str) -> float:
    """The time claim ``name``: a finite number (of seconds since 1970), or the token is refused."""
    value = claims.get(name)
    if value is None:
        raise Refused(f"The access token has no '{name}' claim.")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Refused(f"The access token's '{name}' claim is not a time.")
    return float(value)


def _is_guid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False
