"""The sample app (``sample/``): its settings, its pages, and sign-in end to end in chromium."""

from __future__ import annotations

import importlib.util
import json
import os
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
    API_CLIENT_ID,
    B2C_EDIT_PROFILE,
    B2C_SIGN_IN,
    B2C_TENANT,
    CLIENT_ID,
    CLIENT_SECRET,
    DAEMON_CLIENT_ID,
    DAEMON_NO_ROLES_CLIENT_ID,
    DAEMON_NO_ROLES_SECRET,
    DAEMON_SECRET,
    MIDDLE_API_CLIENT_ID,
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
        "WEB_API_CLIENT_ID": API_CLIENT_ID,
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


# --- the sample's web API (/api/...) and its callers ----------------------------------------------

API_URI = f"api://{API_CLIENT_ID}"
SCRIPT = SAMPLE / "call_api_as_app.py"


def test_web_api_settings_default_to_the_sign_in_registration() -> None:
    one_registration = settings.from_environ({"IDENTITY_CLIENT_ID": "abc", "WEB_API_URL": "https://api.example/"})
    assert one_registration["WEB_API_CLIENT_ID"] == "abc"
    assert one_registration["WEB_API_APP_ID_URI"] == "api://abc"
    assert one_registration["WEB_API_URL"] == "https://api.example"
    two = settings.from_environ(
        {"IDENTITY_CLIENT_ID": "abc", "WEB_API_CLIENT_ID": "def", "IDENTITY_APP_ID_URI": "https://api.example/todo/"}
    )
    assert two["WEB_API_CLIENT_ID"] == "def"
    assert two["WEB_API_APP_ID_URI"] == "https://api.example/todo"
    assert settings.from_environ({})["WEB_API_URL"] is None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_web_api_answers_a_users_token_with_the_scope(make_sample: Callable[..., Flask], idp: LocalProvider) -> None:
    token = idp.user_token("judy", [f"{API_URI}/Todo.Read"])
    response = make_sample().test_client().get("/api/todos", headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["user"]["sub"] == "judy" and body["user"]["name"] == "Judy"
    assert body["scopes"] == ["Todo.Read"]
    assert [item["id"] for item in body["todos"]] == [1, 2, 3]


def test_web_api_refuses_a_request_without_a_token_even_from_a_signed_in_browser(
    make_sample: Callable[..., Flask], sign_in: SignIn
) -> None:
    client = make_sample().test_client()
    for response in (client.get("/api/todos"), client.get("/api/todos", headers={"Accept": "text/html"})):
        assert response.status_code == 401
        assert response.is_json and response.get_json()["error"] == "unauthorized"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge == f'Bearer realm="{API_URI}", scope="{API_URI}/Todo.Read"'
    assert client.get("/api/jobs").status_code == 401

    # The session cookie of a signed-in user is no bearer token: the API never reads the session.
    sign_in(client, "/todos", login="mallory")
    assert client.get("/todos").status_code == 200  # the page takes the session...
    refused = client.get("/api/todos")  # ...the API does not
    assert refused.status_code == 401 and "error=" not in refused.headers["WWW-Authenticate"]
    malformed = client.get("/api/todos", headers={"Authorization": "Bearer not-a-jwt"})
    assert malformed.status_code == 401 and 'error="invalid_token"' in malformed.headers["WWW-Authenticate"]


def test_web_api_refuses_a_token_without_the_scope_or_the_role(
    make_sample: Callable[..., Flask], idp: LocalProvider
) -> None:
    client = make_sample().test_client()
    other_scope = idp.user_token("oscar", [f"{API_URI}/Secret"])  # the same API, another scope
    response = client.get("/api/todos", headers=bearer(other_scope))
    assert response.status_code == 403
    assert response.get_json()["error"] == "insufficient_scope"
    assert f'scope="{API_URI}/Todo.Read"' in response.headers["WWW-Authenticate"]
    # A user's token is not an app's: /api/jobs wants the app role.
    assert client.get("/api/jobs", headers=bearer(other_scope)).status_code == 403
    # An app's token, even with the role, is not a user's: /api/todos wants the delegated scope.
    app_token = idp.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"{API_URI}/.default")["access_token"]
    assert client.get("/api/todos", headers=bearer(app_token)).status_code == 403
    jobs = client.get("/api/jobs", headers=bearer(app_token))
    assert jobs.status_code == 200 and jobs.get_json()["caller"] == DAEMON_CLIENT_ID
    # A token the same provider issued for another API is not one for this API.
    elsewhere = idp.user_token("oscar", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    refused = client.get("/api/todos", headers=bearer(elsewhere))
    assert refused.status_code == 401 and "not for this API" in refused.get_json()["error_description"]


def test_web_api_answers_a_cors_preflight_without_a_token(make_sample: Callable[..., Flask]) -> None:
    response = make_sample().test_client().options("/api/todos")
    assert response.status_code == 200
    assert "GET" in response.headers["Allow"]


def test_todos_page_shows_the_web_apis_answer_for_the_signed_in_user(
    live_sample: LiveServer, idp: LocalProvider
) -> None:
    browser = requests.Session()
    back = idp.sign_in_to_app(browser, live_sample.url + "/todos", login="ivan")
    assert back.status_code == 302 and back.headers["Location"] == "/todos"
    response = browser.get(live_sample.url + "/todos", timeout=30)
    page = response.text
    assert response.status_code == 200
    assert f"GET {live_sample.url}/api/todos" in page  # the app called its own API, over HTTP
    assert f"<code>{API_URI}/Todo.Read</code>" in page
    assert 'id="status">200<' in page
    assert '<li class="done">Register the web API and expose the scope Todo.Read</li>' in page
    assert "&#34;sub&#34;: &#34;ivan&#34;" in page and "&#34;name&#34;: &#34;Ivan&#34;" in page
    assert "Bearer" not in page and "eyJ" not in page  # no token shown


def test_todos_page_reports_a_refusal_by_the_web_api(
    make_sample: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    # Another deployment of the API that takes tokens of another registration refuses this one's.
    api = make_sample(WEB_API_CLIENT_ID=DAEMON_CLIENT_ID)
    with LiveServer(api, free_port()) as server:
        client = make_sample(WEB_API_URL=server.url + "/").test_client()
        sign_in(client, "/todos", login="peggy")
        page = client.get("/todos").get_data(as_text=True)
    assert f"GET {server.url}/api/todos" in page
    assert 'id="status">401<' in page
    assert "not for this API" in page
    assert 'id="todos"' not in page


def run_script(env_file: Path, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python sample/call_api_as_app.py --env-file <env_file>`` with no sample setting inherited."""
    inherited = {k: v for k, v in (environ or os.environ).items() if not k.startswith(("IDENTITY_", "WEB_API_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--env-file", str(env_file)],
        env=inherited,
        capture_output=True,
        text=True,
        timeout=60,
    )


def daemon_env_file(path: Path, idp: LocalProvider, api_url: str, client_id: str, secret: str) -> Path:
    values = {
        "DAEMON_CLIENT_ID": client_id,
        "DAEMON_CLIENT_CREDENTIAL": secret,
        "IDENTITY_AUTHORITY": idp.entra_authority,
        "IDENTITY_INSTANCE_DISCOVERY": "false",
        "WEB_API_CLIENT_ID": API_CLIENT_ID,
        "WEB_API_URL": api_url,
        "REQUESTS_CA_BUNDLE": str(idp.ca_bundle),
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_the_app_only_script_calls_the_api_with_the_role_and_is_refused_without(
    make_sample: Callable[..., Flask], idp: LocalProvider, tmp_path: Path
) -> None:
    with LiveServer(make_sample(), free_port()) as server:
        idp.log(clear=True)
        with_role = run_script(
            daemon_env_file(tmp_path / "daemon.env", idp, server.url, DAEMON_CLIENT_ID, DAEMON_SECRET)
        )
        without = run_script(
            daemon_env_file(
                tmp_path / "no-role.env", idp, server.url, DAEMON_NO_ROLES_CLIENT_ID, DAEMON_NO_ROLES_SECRET
            )
        )
    assert with_role.returncode == 0, with_role.stdout + with_role.stderr
    assert with_role.stdout.startswith(f"GET {server.url}/api/jobs: 200\n")
    answer = json.loads(with_role.stdout.split("\n", 1)[1])
    assert answer["caller"] == DAEMON_CLIENT_ID and answer["app_only"] is True and answer["roles"] == ["Jobs.Run"]
    assert [job["name"] for job in answer["jobs"]] == ["nightly-report", "purge-expired"]

    assert without.returncode == 1, without.stdout + without.stderr
    assert without.stdout.startswith(f"GET {server.url}/api/jobs: 403\n")
    assert 'WWW-Authenticate: Bearer realm="api://' in without.stdout and 'error="insufficient_scope"' in without.stdout
    for run in (with_role, without):
        assert "eyJ" not in run.stdout + run.stderr  # the token is never printed
    grants = [e for e in idp.log() if e["method"] == "POST" and e["path"].endswith("/oauth2/v2.0/token")]
    assert len(grants) == 2  # one client credentials grant per run


def test_the_app_only_script_names_a_missing_setting(tmp_path: Path) -> None:
    (tmp_path / "empty.env").write_text("DAEMON_CLIENT_ID=x\n")
    result = run_script(tmp_path / "empty.env")
    assert result.returncode == 2
    assert "Set DAEMON_CLIENT_CREDENTIAL (or IDENTITY_CLIENT_CREDENTIAL)." in result.stderr


def test_demo_serves_the_web_api_to_its_pages_and_to_the_printed_app_only_command(tmp_path: Path) -> None:
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
        config = json.loads((tmp_path / "idp-config.json").read_text())
        provider = LocalProvider(tmp_path, redirect_uris=[], post_logout_redirect_uris=[], port=config["port"])
        app_browser = requests.Session()
        back = provider.sign_in_to_app(app_browser, origin + "/todos", login="alice", browser=provider.browser())
        assert back.status_code == 302 and back.headers["Location"] == "/todos"
        page = app_browser.get(origin + "/todos", timeout=30).text
        assert 'id="status">200<' in page, page
        assert 'id="todos"' in page and "&#34;sub&#34;: &#34;alice&#34;" in page

        env_file = tmp_path / "call-api-as-app.env"
        as_app = run_script(env_file)
        assert as_app.returncode == 0, as_app.stdout + as_app.stderr
        assert f"GET {origin}/api/jobs: 200" in as_app.stdout and '"Jobs.Run"' in as_app.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=20)
    assert demo.returncode == 0, output
    assert f"call_api_as_app.py --env-file {env_file}" in output  # the command the demo tells the reader to run


@pytest.mark.browser
def test_browser_to_dos_page_lists_what_the_web_api_answered(
    live_sample: LiveServer, idp: LocalProvider, page: Any
) -> None:
    page.goto(live_sample.url + "/")
    page.click("#sign-in")
    sign_in_on_provider_page(page, idp, live_sample.url + "/", login="heidi")
    page.click("#todos")
    page.wait_for_url(live_sample.url + "/todos")
    assert page.inner_text("#status") == "200"
    assert page.locator("#todos li").all_inner_texts() == [
        "Register the web API and expose the scope Todo.Read",
        "Sign in to the web app",
        "Give the daemon the app role Jobs.Run",
    ]
    answer = json.loads(page.text_content("#result") or "")
    assert answer["user"]["sub"] == "heidi" and answer["scopes"] == ["Todo.Read"]
