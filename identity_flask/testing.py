"""Test helpers for apps that use identity_flask, registered as a pytest plugin.

Sign a chosen user into Flask's test client, with an access token per scope,
and test protected views with no identity provider running::

    from identity_flask.testing import sign_in

    def test_profile(app):
        client = app.test_client()
        sign_in(client, {"name": "Ada", "preferred_username": "ada@example.com"},
                tokens={"User.Read": "token-123"})
        assert client.get("/profile").status_code == 200

The helpers write the session exactly as a real sign-in does: the user's
claims, their MSAL account id and a genuine MSAL token cache holding the
given tokens, which ``login_required(scopes=...)`` reads through MSAL. The
provider's metadata is answered in-process (see :func:`offline`), so no
request leaves the test.

The plugin also provides the fixtures :func:`identity_user`,
:func:`identity_tokens` and :func:`signed_in_client`, built on the ``app``
fixture of your own ``conftest.py``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    import requests
    from flask import Flask
    from flask.testing import FlaskClient

    from .app_state import AppState

__all__ = [
    "DEFAULT_CLAIMS",
    "DEFAULT_TOKENS",
    "identity_tokens",
    "identity_user",
    "login_url",
    "offline",
    "sign_in",
    "sign_out",
    "signed_in_client",
]

#: The claims :func:`sign_in` uses when given none.
DEFAULT_CLAIMS: dict[str, Any] = {
    "sub": "test-user",
    "oid": "00000000-0000-0000-0000-000000000001",
    "tid": "00000000-0000-0000-0000-0000000000aa",
    "name": "Test User",
    "preferred_username": "test.user@example.com",
}

#: The tokens the :func:`identity_tokens` fixture gives by default.
DEFAULT_TOKENS: dict[str, str] = {"User.Read": "test-access-token"}

_DISCOVERY = "/.well-known/openid-configuration"


def _state(app: Flask) -> AppState:
    from .app_state import AppState

    state = app.extensions.get("identity")
    if not isinstance(state, AppState):
        raise RuntimeError("identity_flask is not set up on this app: call Auth(app) or auth.init_app(app) first.")
    return state


def _provider_metadata(url: str) -> dict[str, Any] | None:
    """A discovery document for the authority whose discovery URL is ``url``."""
    parts = urlsplit(url)
    path = parts.path
    if path.endswith(_DISCOVERY):
        base = f"{parts.scheme}://{parts.netloc}{path[: -len(_DISCOVERY)]}"
        issuer = base
        if base.endswith("/v2.0"):  # Entra ID, External ID and B2C publish v2.0 metadata
            base = base[: -len("/v2.0")]
        endpoints = base + "/oauth2/v2.0"
        return {
            "issuer": issuer,
            "authorization_endpoint": endpoints + "/authorize",
            "token_endpoint": endpoints + "/token",
            "end_session_endpoint": endpoints + "/logout",
            "jwks_uri": base + "/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    if path.endswith("/discovery/instance"):  # Microsoft's instance discovery
        host = parts.hostname or ""
        authorize = parse_qs(parts.query).get("authorization_endpoint", [f"https://{host}/common"])[0]
        tenant = authorize.split("/oauth2/", 1)[0]
        return {
            "tenant_discovery_endpoint": tenant + "/v2.0" + _DISCOVERY,
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
    return None


def _offline_adapter() -> requests.adapters.BaseAdapter:
    import requests
    from requests.adapters import BaseAdapter

    class OfflineProvider(BaseAdapter):
        """Answers the provider's metadata requests in-process; refuses token requests."""

        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            url = str(request.url)
            metadata = _provider_metadata(url) if request.method == "GET" else None
            response = requests.Response()
            response.request = request
            response.url = url
            response.headers["Content-Type"] = "application/json"
            if metadata is not None:
                response.status_code = 200
                body: dict[str, Any] = metadata
            elif request.method == "POST":
                # No refresh token is ever stored, so this is only reached for
                # grants a test cannot complete without a provider.
                response.status_code = 400
                body = {
                    "error": "invalid_grant",
                    "error_description": "identity_flask.testing: no identity provider is running in this test.",
                }
            else:
                response.status_code = 404
                body = {"error": "not_found"}
            response._content = json.dumps(body).encode()
            return response

        def close(self) -> None:
            pass

    return OfflineProvider()


def offline(app: Flask) -> None:
    """Answer the app's identity provider requests in-process, from now on.

    Discovery documents (and Microsoft's instance discovery) are generated
    for whatever authority the app is configured with; token requests are
    refused with ``invalid_grant``. The app then reaches no network when it
    builds sign-in links, reads tokens, or signs users out, and a real sign-in
    can no longer complete. :func:`sign_in` calls this for you.

    :param app: an app set up with :class:`~identity_flask.Auth`.
    """
    http = _state(app).client.http
    adapter = _offline_adapter()
    http.mount("https://", adapter)
    http.mount("http://", adapter)


def _b64url(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(data)).encode()).decode().rstrip("=")


def sign_in(
    client: FlaskClient,
    claims: Mapping[str, Any] | None = None,
    *,
    tokens: Mapping[str, str] | None = None,
    expires_in: int = 3600,
) -> dict[str, Any]:
    """Sign a user into ``client``'s session, as the provider's callback would.

    :param client: a test client of an app set up with :class:`~identity_flask.Auth`.
    :param claims: the user's id token claims, as views see them in
        ``context["user"]`` and :data:`~identity_flask.current_user`.
        :data:`DEFAULT_CLAIMS` when omitted; a ``sub`` is added if missing.
    :param tokens: an access token per scope, e.g. ``{"User.Read": "token-123"}``.
        A key may hold several space-separated scopes served by one token.
        A view asking for a scope not listed here sends the user to sign in
        again, as a real app does when consent is missing.
    :param expires_in: lifetime of the tokens, in seconds. MSAL treats a token
        with less than 5 minutes left as expired, and with no provider to
        refresh it the view asks the user to sign in again.
    :return: the claims stored.
    """

    from . import session_data
    from .client import TokenCache, first_account_id
    from .tokens import trimmed

    app: Flask = client.application
    state = _state(app)
    offline(app)
    user = {"sub": DEFAULT_CLAIMS["sub"], **(DEFAULT_CLAIMS if claims is None else claims)}
    cache = TokenCache()
    msal_app = state.client.msal_app(cache)
    authority = msal_app.authority
    response: dict[str, Any] = {"id_token_claims": user, "token_type": "Bearer"}
    if state.settings.authority.kind != "oidc" and user.get("tid"):
        # Microsoft's providers name accounts "<object id>.<tenant id>" through client_info.
        response["client_info"] = _b64url({"uid": user.get("oid") or user["sub"], "utid": user["tid"]})
    event: dict[str, Any] = {
        "client_id": state.settings.client_id,
        "token_endpoint": authority.token_endpoint,
        "environment": authority.instance,
        "grant_type": "authorization_code",
    }
    cache.add({**event, "scope": ["openid", "profile"], "response": response})
    for scope, token in (tokens or {}).items():
        token_response = {**response, "access_token": token, "expires_in": expires_in, "scope": scope}
        cache.add({**event, "scope": scope.split(), "response": token_response})
    account_id = first_account_id(msal_app)
    with client.session_transaction() as session:
        session_data.sign_out(session)
        session_data.sign_in(session, user, account_id, trimmed(json.loads(cache.serialize()), time.time()))
    return user


def sign_out(client: FlaskClient) -> None:
    """Forget the user in ``client``'s session, as the logout view does here.

    :param client: a test client of an app set up with :class:`~identity_flask.Auth`.
    """
    from . import session_data

    with client.session_transaction() as session:
        session_data.sign_out(session)


def login_url(app: Flask, next_url: str | None = None, scopes: Iterable[str] = ()) -> str:
    """Where a protected view sends a signed-out browser, for comparing with ``response.location``.

    :param app: an app set up with :class:`~identity_flask.Auth`.
    :param next_url: the page the user comes back to after signing in.
    :param scopes: the scopes the view asks for.
    """
    state = _state(app)
    with app.test_request_context():
        return state.login_url(next_url=next_url, scopes=scopes)


@pytest.fixture
def identity_user() -> dict[str, Any]:
    """The claims :func:`signed_in_client` signs in; override it to choose the user."""
    return dict(DEFAULT_CLAIMS)


@pytest.fixture
def identity_tokens() -> dict[str, str]:
    """The access token per scope :func:`signed_in_client` holds; override it to choose them."""
    return dict(DEFAULT_TOKENS)


@pytest.fixture
def signed_in_client(
    app: Flask, identity_user: dict[str, Any], identity_tokens: dict[str, str]
) -> Iterator[FlaskClient]:
    """A test client of your ``app`` fixture with :func:`identity_user` signed in."""
    with app.test_client() as client:
        sign_in(client, identity_user, tokens=identity_tokens)
        yield client
