"""The sample on two gunicorn instances (2 workers each) sharing sessions through a real Redis.

This module has its own local provider: it must know the redirect URIs of
both instances' ports.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import requests
from localidp import CLIENT_ID, CLIENT_SECRET, LocalProvider, free_port
from servers import Gunicorn, RedisServer

pytestmark = pytest.mark.redis

SAMPLE = Path(__file__).resolve().parent.parent / "sample"
#: Every sample variable, so that a developer's sample/.env cannot leak into the test.
BLANK = (
    "IDENTITY_OIDC_AUTHORITY",
    "IDENTITY_B2C_TENANT_NAME",
    "IDENTITY_B2C_SIGNUP_SIGNIN_USER_FLOW",
    "IDENTITY_B2C_EDIT_PROFILE_USER_FLOW",
    "IDENTITY_B2C_RESET_PASSWORD_USER_FLOW",
    "IDENTITY_B2C_AUTHORITY_HOST",
    "WEBSITE_HOSTNAME",
)


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="module")
def own_provider(tmp_path_factory: pytest.TempPathFactory, ports: tuple[int, int]) -> Iterator[LocalProvider]:
    origins = [f"http://127.0.0.1:{port}" for port in ports]
    provider = LocalProvider(
        tmp_path_factory.mktemp("idp-redis"),
        redirect_uris=[f"{origin}/getAToken" for origin in origins],
        post_logout_redirect_uris=[f"{origin}/" for origin in origins],
    )
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def instances(
    own_provider: LocalProvider, redis_url: str, ports: tuple[int, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two gunicorn instances of the sample, each with 2 workers, against the same Redis."""
    env = {
        **{name: "" for name in BLANK},
        "IDENTITY_CLIENT_ID": CLIENT_ID,
        "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
        "IDENTITY_AUTHORITY": own_provider.entra_authority,
        "IDENTITY_REDIRECT_URI": "/getAToken",
        "API_ENDPOINT": own_provider.userinfo_endpoint,
        "API_SCOPES": "User.Read",
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_hex(32),
        "BEHIND_PROXY": "false",
        "REQUESTS_CA_BUNDLE": str(own_provider.ca_bundle),
        "CURL_CA_BUNDLE": str(own_provider.ca_bundle),
    }
    logs = tmp_path_factory.mktemp("gunicorn")
    with ExitStack() as running:
        first, second = (
            running.enter_context(Gunicorn(port, env, app="app:app", chdir=SAMPLE, log=logs / f"{port}.log"))
            for port in ports
        )
        yield first.url, second.url


def test_signed_in_on_one_instance_is_signed_in_on_the_other_and_signed_out_on_both(
    instances: tuple[str, str], own_provider: LocalProvider, redis_url: str
) -> None:
    first, second = instances
    store = redis.from_url(redis_url)
    app_browser = requests.Session()  # one cookie jar; cookies do not depend on the port
    at_provider = own_provider.browser()

    # Starting at the API page signs in with its scope, so both instances can call the API.
    callback = own_provider.sign_in_from(app_browser, first + "/call-api", login="alice", browser=at_provider)
    assert callback.startswith(first + "/getAToken?")
    response = own_provider.back_to_app(app_browser, callback)
    assert response.status_code == 302 and response.headers["Location"] == "/call-api"

    session_id = app_browser.cookies.get("session")
    assert session_id and store.exists(f"session:{session_id}"), "the session is not in Redis"

    # Several requests each, so that both workers of both instances answer some.
    for _ in range(4):
        for origin in instances:
            page = app_browser.get(origin + "/claims", allow_redirects=False)
            assert page.status_code == 200, (origin, page.status_code)
            assert "alice@example.test" in page.text
    api = app_browser.get(second + "/call-api", allow_redirects=False)
    assert api.status_code == 200
    assert 'id="status">200<' in api.text and "&#34;sub&#34;: &#34;alice&#34;" in api.text

    response = app_browser.get(second + "/logout", headers={"Referer": second + "/"}, allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"].startswith(own_provider.origin)
    back = own_provider.sign_in(response.headers["Location"], browser=at_provider)
    assert back == second + "/"
    assert 'id="signed-out"' in app_browser.get(back).text
    assert not store.exists(f"session:{session_id}")

    for origin in instances:
        response = app_browser.get(origin + "/claims", allow_redirects=False)
        assert response.status_code == 302, origin
        assert response.headers["Location"].startswith("/login")
        assert 'id="signed-out"' in app_browser.get(origin + "/").text
