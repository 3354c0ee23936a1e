"""The sample app (``sample/``): its settings, its pages, and sign-in end to end in chromium."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import APP_PORT, REDIRECT_URI, LiveServer, SignIn, sign_in_on_provider_page
from flask import Flask
from flask_session.redis import RedisSessionInterface
from localidp import (
    B2C_EDIT_PROFILE,
    B2C_SIGN_IN,
    B2C_TENANT,
    CLIENT_ID,
    CLIENT_SECRET,
    LocalProvider,
    free_port,
    wait_until_ready,
)

from identity_flask import ConfigurationError
from identity_flask.session_data import CACHE_KEY

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample"
sys.path.insert(0, str(SAMPLE))

import webapp  # noqa: E402
from webapp import create_app, settings  # noqa: E402


def sample_environ(provider: LocalProvider, **extra: str) -> dict[str, str]:
    """The sample's environment variables against ``provider``, as ``make demo`` sets them."""
    return {
        "IDENTITY_CLIENT_ID": CLIENT_ID,
        "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
        "IDENTITY_AUTHORITY": provider.entra_authority,
        "API_ENDPOINT": provider.userinfo_endpoint,
        "API_SCOPES": "User.Read",
        **extra,
    }


@pytest.fixture
def make_sample(idp: LocalProvider, tmp_path: Path) -> Callable[..., Flask]:
    """Build the sample against the local provider; keyword arguments are environment variables."""

    def build(**environ: str) -> Flask:
        config = {"SESSION_FILE_DIR": str(tmp_path / "sessions"), "TESTING": True}
        return create_app(config, environ=sample_environ(idp, **environ))

    return build


def redirect_uri_sent(client: Any, **headers: str) -> str:
    """The redirect URI the login view sends to the provider."""
    response = client.get("/login", headers=headers)
    assert response.status_code == 302
    return parse_qs(urlsplit(response.location).query)["redirect_uri"][0]


def test_settings_copy_identity_variables_and_fill_in_defaults() -> None:
    config = settings.from_environ(
        {
            "IDENTITY_CLIENT_ID": "abc",
            "IDENTITY_INSTANCE_DISCOVERY": "false",
            "IDENTITY_CLIENT_CREDENTIAL": '{"private_key_pfx_path": "/var/ssl/private/X.p12"}',
            "API_SCOPES": "api://x/read, api://x/write",
            "PATH": "/usr/bin",
        }
    )
    assert config["IDENTITY_CLIENT_ID"] == "abc"
    assert config["IDENTITY_INSTANCE_DISCOVERY"] == "false"  # identity_flask reads it
    assert config["IDENTITY_CLIENT_CREDENTIAL"] == {"private_key_pfx_path": "/var/ssl/private/X.p12"}
    assert config["IDENTITY_REDIRECT_URI"] == "/getAToken"
    assert config["API_SCOPES"] == ["api://x/read", "api://x/write"]
    assert config["API_ENDPOINT"] == "https://graph.microsoft.com/v1.0/me"
    assert config["REDIS_URL"] is None
    assert config["BEHIND_PROXY"] is False
    assert len(config["SECRET_KEY"]) >= 32
    assert "PATH" not in config
    assert settings.from_environ({})["API_SCOPES"] == ["User.Read"]


def test_boolean_identity_variables_reach_the_extension_as_booleans(make_sample: Callable[..., Flask]) -> None:
    app = make_sample(IDENTITY_INSTANCE_DISCOVERY="false")
    assert app.extensions["identity"].settings.instance_discovery is False
    assert make_sample(IDENTITY_INSTANCE_DISCOVERY="").extensions["identity"].settings.instance_discovery is None


def test_behind_proxy_defaults_on_for_app_service_and_is_checked() -> None:
    assert settings.from_environ({"WEBSITE_HOSTNAME": "x.azurewebsites.net"})["BEHIND_PROXY"] is True
    assert settings.from_environ({"WEBSITE_HOSTNAME": "x", "BEHIND_PROXY": "off"})["BEHIND_PROXY"] is False
    with pytest.raises(ValueError, match="BEHIND_PROXY"):
        settings.from_environ({"BEHIND_PROXY": "maybe"})


def test_missing_settings_are_named_when_the_app_is_built_not_at_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("IDENTITY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(webapp, "DOTENV", tmp_path / "no.env")
    spec = importlib.util.spec_from_file_location("sample_entry_point", SAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)  # importing never needs settings
    with pytest.raises(ConfigurationError, match="IDENTITY_CLIENT_ID"):
        entry.app  # noqa: B018


def test_the_entry_point_builds_the_app_once(
    monkeypatch: pytest.MonkeyPatch, idp: LocalProvider, tmp_path: Path
) -> None:
    # REDIS_URL: no session files in sample/ (nothing connects until a request comes).
    for name, value in sample_environ(idp, REDIS_URL="redis://127.0.0.1:1/0").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(webapp, "DOTENV", tmp_path / "no.env")
    spec = importlib.util.spec_from_file_location("sample_entry_point_ok", SAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert isinstance(entry.app, Flask)
    assert entry.app is entry.app
    with pytest.raises(AttributeError):
        entry.application  # noqa: B018


def test_behind_app_service_the_redirect_uri_is_https_on_the_public_host(make_sample: Callable[..., Flask]) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "contoso-web.azurewebsites.net"}
    app = make_sample(WEBSITE_HOSTNAME="contoso-web.azurewebsites.net")
    client = app.test_client()
    assert redirect_uri_sent(client, **forwarded) == "https://contoso-web.azurewebsites.net/getAToken"
    login = client.get("/login", headers=forwarded)
    (cookie,) = [c for c in login.headers.getlist("Set-Cookie") if c.startswith("identity_sign_in_")]
    assert "Secure" in cookie and "HttpOnly" in cookie  # the pending sign-in's cookie
    # TRUSTED_HOSTS comes from WEBSITE_HOSTNAME: another forwarded host is refused.
    evil = client.get("/login", headers={**forwarded, "X-Forwarded-Host": "evil.example"})
    assert evil.status_code == 400

    # Not behind a proxy: the same headers are not trusted.
    plain = make_sample(BEHIND_PROXY="false").test_client()
    assert redirect_uri_sent(plain, **forwarded) == "http://localhost/getAToken"


def test_redis_url_keeps_sessions_in_redis(make_sample: Callable[..., Flask]) -> None:
    app = make_sample(REDIS_URL="redis://127.0.0.1:1/0")
    assert isinstance(app.session_interface, RedisSessionInterface)
    assert app.config["SESSION_REDIS"].connection_pool.connection_kwargs["port"] == 1


def test_home_page_signed_out_offers_sign_in(make_sample: Callable[..., Flask]) -> None:
    page = make_sample().test_client().get("/").get_data(as_text=True)
    assert 'id="signed-out"' in page
    assert 'href="/login"' in page
    assert "/logout" not in page


def test_home_page_signed_in_shows_the_user_and_no_edit_profile_link_without_b2c(
    make_sample: Callable[..., Flask], sign_in: SignIn
) -> None:
    client = make_sample().test_client()
    response = sign_in(client, "/login", login="alice")
    assert response.location == "/"
    page = client.get("/").get_data(as_text=True)
    assert '<span id="name">Alice</span>' in page
    assert 'id="username">alice@example.test<' in page
    assert "11111111-2222-3333-4444-555555555555" in page  # the tid claim
    assert 'href="/logout"' in page
    assert "edit-profile" not in page and "Edit" not in page


def test_b2c_edit_profile_link_is_shown_when_that_user_flow_is_configured(
    make_sample: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = make_sample(
        IDENTITY_AUTHORITY="",
        IDENTITY_B2C_TENANT_NAME=B2C_TENANT,
        IDENTITY_B2C_SIGNUP_SIGNIN_USER_FLOW=B2C_SIGN_IN,
        IDENTITY_B2C_EDIT_PROFILE_USER_FLOW=B2C_EDIT_PROFILE,
        IDENTITY_B2C_AUTHORITY_HOST=idp.origin,
    ).test_client()
    sign_in(client, "/claims", login="dave")
    page = client.get("/").get_data(as_text=True)
    assert 'id="edit-profile"' in page
    response = client.get("/login?flow=edit_profile&next=/")
    assert response.status_code == 302
    assert f"/{B2C_EDIT_PROFILE}/" in response.location


def test_api_page_shows_the_api_answer_and_never_the_token(make_sample: Callable[..., Flask], sign_in: SignIn) -> None:
    client = make_sample().test_client()
    sign_in(client, "/call-api", login="erin")
    response = client.get("/call-api")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="status">200<' in page
    assert "&#34;sub&#34;: &#34;erin&#34;" in page
    with client.session_transaction() as session:
        cache = session[CACHE_KEY]
    secrets = [entry["secret"] for entry in cache["AccessToken"].values()]
    assert secrets and all(secret not in page for secret in secrets)


def test_api_page_reports_an_unreachable_api(make_sample: Callable[..., Flask], sign_in: SignIn) -> None:
    client = make_sample(API_ENDPOINT="http://127.0.0.1:1/nothing-here").test_client()
    sign_in(client, "/call-api")
    page = client.get("/call-api").get_data(as_text=True)
    assert 'id="status">No answer<' in page
    assert "could not be reached" in page


@pytest.fixture
def live_sample(make_sample: Callable[..., Flask]) -> Iterator[LiveServer]:
    """The sample on the port the shared provider knows, with that port's redirect URI."""
    with LiveServer(make_sample(IDENTITY_REDIRECT_URI=REDIRECT_URI), APP_PORT) as server:
        yield server


@pytest.mark.browser
def test_browser_sign_in_call_the_api_and_sign_out(live_sample: LiveServer, idp: LocalProvider, page: Any) -> None:
    page.goto(live_sample.url + "/")
    assert page.is_visible("#signed-out")
    page.click("#sign-in")
    sign_in_on_provider_page(page, idp, live_sample.url + "/")
    assert page.inner_text("#name") == "Grace"
    assert page.inner_text("#username") == "grace@example.test"

    page.click("#call-api")
    page.wait_for_url(live_sample.url + "/call-api")
    assert page.inner_text("#status") == "200"
    answer = json.loads(page.inner_text("#result"))
    assert answer["sub"] == "grace" and answer["name"] == "Grace"

    page.click("#sign-out")
    page.wait_for_url(live_sample.url + "/")
    assert page.is_visible("#signed-out")
    assert any(e["path"].endswith("/oauth2/v2.0/logout") for e in idp.log()), "never signed out at the provider"

    page.goto(live_sample.url + "/claims")
    page.wait_for_url(idp.origin + "/**")
    assert page.title() == "Sign-in"


def test_demo_command_serves_the_sample_against_the_local_provider_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--port", str(port), "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        its_output = demo.stdout.read if demo.stdout else str
        wait_until_ready(
            demo, lambda: requests.get(origin + "/", timeout=2).ok, "the demo", timeout=30, detail=its_output
        )
        # The demo's provider, to play the user on its login page.
        config = json.loads((tmp_path / "idp-config.json").read_text())
        provider = LocalProvider(tmp_path, redirect_uris=[], post_logout_redirect_uris=[], port=config["port"])
        at_provider = provider.browser()

        app_browser = requests.Session()
        back = provider.sign_in_to_app(app_browser, origin + "/call-api", login="alice", browser=at_provider)
        assert back.status_code == 302 and back.headers["Location"] == "/call-api"
        page = app_browser.get(origin + "/call-api").text
        assert 'id="status">200<' in page, page
        assert "&#34;sub&#34;: &#34;alice&#34;" in page
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=20)
    assert demo.returncode == 0, output
    assert f"running at {origin}/" in output
    assert "any login and password" in output
    assert "code=" not in output, "a request log line shows an authorization code"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://127.0.0.1:{config['port']}/__health", verify=str(provider.ca_path), timeout=2)
