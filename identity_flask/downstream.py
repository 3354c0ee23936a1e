"""Tokens for further APIs: as the app itself (client credentials), or on behalf of
the caller of a web API (the on-behalf-of flow).

App tokens are kept in one MSAL token cache per app and process, which MSAL
reads before it asks the provider. On-behalf-of tokens are kept here, per
incoming token (by its SHA-256) and scopes, in a cache bounded by
:data:`OBO_ENTRIES` that drops the least recently used; MSAL's own cache is
not used for them, as it would keep every caller's tokens for good.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import msal

from . import credentials
from .client import TokenCache, _TimeoutSession, provider_calls
from .config import ApiSettings, Authority, Settings
from .errors import BearerTokenError, ConfigurationError, ProviderError, ProviderUnavailable
from .redaction import one_line
from .tokens import EXPIRY_MARGIN, from_answer

logger = logging.getLogger(__name__)

#: On-behalf-of tokens kept per process: about 3 KB each, so about 3 MB at most.
OBO_ENTRIES = 1024

#: Errors of the on-behalf-of grant that concern the caller's token, not the provider.
_CALLER_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


class _DiscardingCache(TokenCache):
    """A token cache that keeps nothing: on-behalf-of answers are kept by :class:`Downstream`."""

    def add(self, event: dict[str, Any], now: float | None = None) -> None:
        return None


class Downstream:
    """Gets and keeps tokens for further APIs for one app registration.

    :param client_id: the app's (or API's) client id.
    :param credential: its client credential, as MSAL takes it; ``None`` refuses every call.
    """

    def __init__(
        self,
        client_id: str,
        credential: Any,
        authority: Authority,
        *,
        instance_discovery: bool | None,
        timeout: float,
    ) -> None:
        self.client_id = client_id
        self.credential = credential
        self.authority = authority
        self.instance_discovery = instance_discovery
        self.timeout = timeout
        self.http = _TimeoutSession(timeout)
        self._app_lock = threading.Lock()
        self.http_cache: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._obo: collections.OrderedDict[tuple[bytes, tuple[str, ...]], tuple[dict[str, Any], float]] = (
            collections.OrderedDict()
        )

    @classmethod
    def for_settings(cls, settings: Settings | ApiSettings) -> Downstream:
        """The further-API tokens of an app (:class:`Auth`) or a web API (:class:`ApiAuth`)."""
        return cls(
            settings.client_id,
            settings.client_credential,
            settings.authority,
            instance_discovery=settings.instance_discovery,
            timeout=settings.timeout,
        )

    def _app(self, purpose: str) -> msal.ConfidentialClientApplication:
        app = self._apps.get(purpose)
        if app is not None:
            return app
        if not self.credential:
            raise ConfigurationError(
                "Calling further APIs needs the app's credential: set 'client_credential' "
                "(IDENTITY_CLIENT_CREDENTIAL) to a client secret or certificate of the app registration."
            )
        with self._lock:
            app = self._apps.get(purpose)
            if app is None:
                cache = _DiscardingCache() if purpose == "obo" else TokenCache()
                with provider_calls("reading its configuration"):
                    app = msal.ConfidentialClientApplication(
                        self.client_id,
                        client_credential=credentials.msal_credential(self.credential),
                        token_cache=cache,
                        http_client=self.http,
                        http_cache=self.http_cache,
                        **self.authority.msal_kwargs(self.instance_discovery),
                    )
                self._apps[purpose] = app
            return app

    def app_token(self, scopes: Sequence[str]) -> dict[str, Any]:
        """A token for the app itself (client credentials), from MSAL's cache while it lasts.

        :param scopes: usually one ``<resource>/.default`` scope.
        :return: ``access_token``, ``token_type``, ``expires_in`` and ``scopes``.
        :raises ProviderError: the provider refused (unknown scope, no permission).
        :raises ProviderUnavailable: it could not be reached.
        """
        wanted = list(scopes)
        app = self._app("app")
        # One request at a time asks: MSAL looks in its cache first, so the others find
        # the token the first one got instead of each asking the provider.
        if not self._app_lock.acquire(timeout=self.timeout):
            raise ProviderUnavailable("The sign-in service is slow to answer. Please try again in a moment.")
        try:
            with provider_calls("getting a token for the app"):
                result = app.acquire_token_for_client(wanted)
        finally:
            self._app_lock.release()
        if not isinstance(result, dict) or "access_token" not in result:
            error = str((result or {}).get("error"))
            logger.warning("The app's token for %s was refused: %s", " ".join(wanted), one_line(error))
            raise ProviderError("The sign-in service refused the app a token.", error=error)
        return from_answer(result, wanted)

    def on_behalf_of(self, assertion: str, scopes: Sequence[str], *, realm: str = "") -> dict[str, Any]:
        """A token for a further API, for the user who called with ``assertion``.

        Kept per incoming token and scopes until five minutes before it expires,
        so repeated calls make no provider request.

        :raises BearerTokenError: the provider will not act for this caller (consent,
            MFA, a claims challenge): answered to the caller, challenge included.
        :raises ProviderError: the provider failed.
        :raises ProviderUnavailable: it could not be reached.
        """
        wanted = tuple(sorted(scopes))
        key = (hashlib.sha256(assertion.encode()).digest(), wanted)
        now = time.time()
        with self._lock:
            kept = self._obo.get(key)
            if kept is not None and kept[1] - now > EXPIRY_MARGIN:
                self._obo.move_to_end(key)
                return {**kept[0], "expires_in": int(kept[1] - now)}
        app = self._app("obo")
        with provider_calls("getting a token on behalf of the caller"):
            result = app.acquire_token_on_behalf_of(assertion, list(wanted))
        if not isinstance(result, dict) or "access_token" not in result:
            result = result if isinstance(result, dict) else {}
            error = str(result.get("error"))
            logger.warning("A token on behalf of the caller was refused: %s", one_line(error))
            if error in _CALLER_ERRORS:
                claims = result.get("claims")
                text = claims if isinstance(claims, str) else json.dumps(claims) if claims else None
                raise BearerTokenError(
                    "The API cannot act on the caller's behalf without a new sign-in.",
                    error="insufficient_claims" if text else "invalid_token",
                    status=401,
                    realm=realm,
                    claims=base64.b64encode(text.encode()).decode() if text else None,
                )
            raise ProviderError("The sign-in service failed to issue a token for a further API.", error=error)
        token = from_answer(result, wanted)
        lifetime = int(token.get("expires_in") or 0)
        with self._lock:
            self._obo[key] = (token, now + lifetime)
            self._obo.move_to_end(key)
            while len(self._obo) > OBO_ENTRIES:
                self._obo.popitem(last=False)
        return token

    def kept(self) -> int:
        """On-behalf-of tokens held (for tests and the docs' memory bound)."""
        with self._lock:
            return len(self._obo)
