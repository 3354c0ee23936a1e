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
from werkzeug.test import Client as WerkzeugClient

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


@pytest.fixture(scope="module")
def localhost_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    """A provider for the sample served by Flask's test client (host ``localhost``)."""
    provider = LocalProvider(
        tmp_path_factory.mktemp("idp-localhost"),
        redirect_uris=["http://localhost/getAToken"],
        post_logout_redirect_uris=["http://localhost/"],
    )
    provider.start()
    yield provider
    provider.stop()


def test_redis_entra_auth_signs_in_to_redis_with_the_managed_identitys_token(
    localhost_provider: LocalProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on Azure Cache for Redis with access keys disabled: the default user is off, and the
    only Redis user the app can be is the managed identity's object id, whose password is its
    token. The sample signs a user in and keeps the session there, through redis-entraid."""
    from conftest import SignIn
    from test_sample import MI_CLIENT_ID, MI_OBJECT_ID, AzureEmulator, off_the_main_thread, sample_environ
    from webapp import create_app

    with ExitStack() as running:
        azure = AzureEmulator(tmp_path, localhost_provider.ca_bundle).start()
        running.callback(azure.stop)
        for name, value in azure.environ().items():
            monkeypatch.setenv(name, value)
        server = running.enter_context(RedisServer())
        token = azure.mint("https://redis.azure.com/")  # the endpoint hands out this one
        admin_password = secrets.token_urlsafe(16)
        admin = redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "admin", "on", f">{admin_password}", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", MI_OBJECT_ID, "on", f">{token}", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        store = redis.from_url(server.url, username="admin", password=admin_password)
        running.callback(store.close)
        with pytest.raises(redis.AuthenticationError):  # no way in without the user and its token
            redis.from_url(server.url).ping()

        environ = sample_environ(
            localhost_provider, REDIS_URL=server.url, REDIS_ENTRA_AUTH="true", AZURE_CLIENT_ID=MI_CLIENT_ID
        )
        client = create_app({"TESTING": True}, environ=environ).test_client()
        signed_in = off_the_main_thread(lambda: SignIn(localhost_provider)(client, "/claims", login="alice"))
        assert signed_in.location == "/claims"
        assert any(key.startswith(b"session:") for key in store.keys())
        page = off_the_main_thread(lambda: client.get("/claims"))
        assert "alice@example.test" in page.get_data(as_text=True)
        assert set(azure.token_requests()) == {("https://redis.azure.com/", MI_CLIENT_ID)}


def test_health_stays_200_for_a_signed_in_browser_while_redis_is_down(
    localhost_provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The health path never reads the session, even with a session cookie: with Redis
    stopped, a page for the same browser is a 503 and ``/health`` a 200."""
    from conftest import SignIn
    from test_sample import sample_environ
    from webapp import create_app

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(localhost_provider.ca_bundle))
    with RedisServer() as server:
        app = create_app({"TESTING": True}, environ=sample_environ(localhost_provider, REDIS_URL=server.url))
        client = app.test_client()
        SignIn(localhost_provider)(client, "/claims", login="alice")
        assert client.get("/claims").status_code == 200
        server.stop()
        app.testing = False  # errors become pages, as in production
        cookie = client.get_cookie("session")
        assert cookie is not None
        # werkzeug's plain client: Flask's would try to use the session that could not be read.
        browser = WerkzeugClient(app)
        browser.set_cookie("session", cookie.value)
        assert browser.get("/health").status_code == 200
        page = browser.get("/claims")
        assert page.status_code == 503 and "session store" in page.get_data(as_text=True)
