"""The sample app (``sample/``): its settings, its pages, and sign-in end to end in chromium."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
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


class Demo:
    """``scripts/demo.py`` on a free port, its files in ``workdir``; stopped with Ctrl-C at the end of
    the ``with`` block, after which ``output`` holds what it printed and ``returncode`` how it ended."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.output = ""
        self.returncode: int | None = None

    def __enter__(self) -> Demo:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo.py"),
                "--port",
                str(self.port),
                "--workdir",
                str(self.workdir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            its_output = self.process.stdout.read if self.process.stdout else str
            wait_until_ready(
                self.process,
                lambda: requests.get(self.origin + "/", timeout=2).ok,
                "the demo",
                timeout=30,
                detail=its_output,
            )
            # The demo's provider, to play the user on its login page.
            config = json.loads((self.workdir / "idp-config.json").read_text())
            self.provider_port = int(config["port"])
            self.provider = LocalProvider(
                self.workdir, redirect_uris=[], post_logout_redirect_uris=[], port=self.provider_port
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        self.output, _ = self.process.communicate(timeout=20)
        self.returncode = self.process.returncode


def test_demo_command_serves_the_sample_against_the_local_provider_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with Demo(tmp_path) as demo:
        origin, provider = demo.origin, demo.provider
        at_provider = provider.browser()

        app_browser = requests.Session()
        back = provider.sign_in_to_app(app_browser, origin + "/call-api", login="alice", browser=at_provider)
        assert back.status_code == 302 and back.headers["Location"] == "/call-api"
        page = app_browser.get(origin + "/call-api").text
        assert 'id="status">200<' in page, page
        assert "&#34;sub&#34;: &#34;alice&#34;" in page
    output = demo.output
    assert demo.returncode == 0, output
    assert f"running at {origin}/" in output
    assert "any login and password" in output
    assert "code=" not in output, "a request log line shows an authorization code"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://127.0.0.1:{demo.provider_port}/__health", verify=str(provider.ca_path), timeout=2)


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
    with Demo(tmp_path) as demo:
        origin, provider = demo.origin, demo.provider
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
    output = demo.output
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


# --- Azure App Service: the managed identity, Key Vault, Redis with Entra ID, health, gunicorn ---

#: The client id and object (principal) id of the emulated user-assigned managed identity.
MI_CLIENT_ID = "0f0e0d0c-1111-4222-8333-944445555666"
MI_OBJECT_ID = "7a7a7a7a-2222-4333-8444-955556666777"


class AzureEmulator:
    """App Service's managed-identity endpoint and Key Vault's ``sign``, on one local TLS server.

    Neither service can run here, so this plays both as they answer: the managed-identity
    endpoint (what MSAL calls with ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``) issues a
    token for the asked resource to the asked client id, and Key Vault signs with an RSA
    key only for a bearer of a Key Vault token. Every request is recorded.
    """

    def __init__(self, workdir: Path, ca_bundle: Path) -> None:
        import trustme
        from cryptography.hazmat.primitives.asymmetric import rsa

        ca = trustme.CA()
        self._leaf = ca.issue_cert("127.0.0.1")
        #: System CAs, the local provider's, and this server's: for REQUESTS_CA_BUNDLE.
        self.ca_bundle = workdir / "azure-ca-bundle.pem"
        self.ca_bundle.write_bytes(ca_bundle.read_bytes() + b"\n" + ca.cert_pem.bytes())
        self.identity_header = secrets.token_urlsafe(16)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests: list[dict[str, Any]] = []
        #: Set to an HTTP status to make Key Vault refuse.
        self.vault_status = 200
        self.tokens: dict[str, str] = {}  # token -> resource
        self._server: Any = None

    def start(self) -> AzureEmulator:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                emulator.requests.append({"path": url.path, "query": query})
                if url.path != "/msi/token" or self.headers.get("X-IDENTITY-HEADER") != emulator.identity_header:
                    self.answer(401, {"statusCode": 401, "message": "no identity header"})
                elif query.get("client_id") != MI_CLIENT_ID:
                    self.answer(400, {"statusCode": 400, "message": "no such identity"})
                else:
                    token = emulator.mint(query["resource"])
                    expires_on = str(int(time.time()) + 3600)
                    self.answer(200, {"access_token": token, "expires_on": expires_on, "token_type": "Bearer"})

            def do_POST(self) -> None:
                import base64

                from cryptography.hazmat.primitives import hashes
                from cryptography.hazmat.primitives.asymmetric import padding, utils

                url = urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                emulator.requests.append({"path": url.path, "query": parse_qs(url.query), "body": body})
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if emulator.tokens.get(token) != "https://vault.azure.net":
                    self.answer(401, {"error": {"code": "Unauthorized", "message": "AKV10000"}})
                elif emulator.vault_status != 200:
                    self.answer(emulator.vault_status, {"error": {"code": "Forbidden", "message": "no sign"}})
                elif not url.path.endswith("/sign") or body.get("alg") != "RS256":
                    self.answer(400, {"error": {"code": "BadParameter", "message": "?"}})
                else:
                    digest = base64.urlsafe_b64decode(body["value"] + "=" * (-len(body["value"]) % 4))
                    signature = emulator.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
                    value = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
                    self.answer(200, {"kid": f"https://{self.headers['Host']}{url.path[:-5]}/v1", "value": value})

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def key_uri(self) -> str:
        return f"{self.origin}/keys/flask-secret-key"

    def environ(self) -> dict[str, str]:
        """What App Service gives a process with a managed identity."""
        return {
            "IDENTITY_ENDPOINT": f"{self.origin}/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "CURL_CA_BUNDLE": str(self.ca_bundle),
        }

    def mint(self, resource: str) -> str:
        """A token for ``resource``: the same one each time, as the endpoint keeps it until it nears expiry."""
        import jwt

        for token, audience in self.tokens.items():
            if audience == resource:
                return token
        now = int(time.time())
        claims = {"aud": resource, "oid": MI_OBJECT_ID, "appid": MI_CLIENT_ID, "iat": now, "exp": now + 3600}
        token = jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
        self.tokens[token] = resource
        return token

    def token_requests(self) -> list[tuple[str, str | None]]:
        """(resource, client_id) of each managed-identity token request."""
        asked = [r["query"] for r in self.requests if r["path"] == "/msi/token"]
        return [(query.get("resource"), query.get("client_id")) for query in asked]


def off_the_main_thread(call: Callable[[], Any], timeout: float = 60) -> Any:
    """``call()`` in another thread, as gunicorn's worker threads serve requests.

    redis-entraid's token manager schedules its renewals on the calling thread's
    running event loop, if it has one, and waits for them: on pytest's main thread,
    Playwright's loop (the browser tests') may be that loop, which never runs them.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=timeout)


@pytest.fixture
def azure(idp: LocalProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureEmulator]:
    """The emulator, with this process's environment set as App Service sets it."""
    emulator = AzureEmulator(tmp_path, idp.ca_bundle).start()
    for name, value in emulator.environ().items():
        monkeypatch.setenv(name, value)
    yield emulator
    emulator.stop()


def test_settings_for_azure_are_read_and_checked() -> None:
    config = settings.from_environ(
        {"REDIS_URL": "rediss://c.redis.cache.windows.net:6380/0", "REDIS_ENTRA_AUTH": "true", "AZURE_CLIENT_ID": "x"}
    )
    assert config["REDIS_ENTRA_AUTH"] is True and config["AZURE_CLIENT_ID"] == "x"
    assert settings.from_environ({})["REDIS_ENTRA_AUTH"] is False
    with pytest.raises(ValueError, match="REDIS_ENTRA_AUTH needs REDIS_URL"):
        settings.from_environ({"REDIS_ENTRA_AUTH": "true"})
    with pytest.raises(ValueError, match="remove the password from REDIS_URL"):
        settings.from_environ({"REDIS_ENTRA_AUTH": "yes", "REDIS_URL": "rediss://:hunter2@c:6380/0"})
    with pytest.raises(ValueError, match="REDIS_ENTRA_AUTH must be true or false"):
        settings.from_environ({"REDIS_ENTRA_AUTH": "perhaps", "REDIS_URL": "redis://c"})

    vault_key = "https://v.vault.azure.net/keys/k"
    config = settings.from_environ({"SECRET_KEY_VAULT_KEY": vault_key})
    assert config["SECRET_KEY"] is None and config["SECRET_KEY_VAULT_KEY"] == vault_key  # derived by create_app
    with pytest.raises(ValueError, match="SECRET_KEY or SECRET_KEY_VAULT_KEY, not both"):
        settings.from_environ({"SECRET_KEY": "k" * 64, "SECRET_KEY_VAULT_KEY": vault_key})
    # IDENTITY_MANAGED_IDENTITY reaches identity_flask as it is, like every IDENTITY_* variable.
    assert settings.from_environ({"IDENTITY_MANAGED_IDENTITY": MI_CLIENT_ID})["IDENTITY_MANAGED_IDENTITY"] == (
        MI_CLIENT_ID
    )


def test_redis_entra_auth_hands_redis_a_credential_provider_for_the_managed_identity(
    make_sample: Callable[..., Flask], azure: AzureEmulator
) -> None:
    from redis_entraid.cred_provider import EntraIdCredentialsProvider

    app = make_sample(REDIS_URL="rediss://127.0.0.1:1/0", REDIS_ENTRA_AUTH="true", AZURE_CLIENT_ID=MI_CLIENT_ID)
    assert isinstance(app.session_interface, RedisSessionInterface)
    connection = app.config["SESSION_REDIS"].connection_pool.connection_kwargs
    provider = connection["credential_provider"]
    assert isinstance(provider, EntraIdCredentialsProvider)
    assert "password" not in connection and "username" not in connection
    # What redis-py sends on connecting: the identity's object id and a token for Redis,
    # which the managed identity issued to the configured client id.
    username, password = off_the_main_thread(provider.get_credentials)
    assert username == MI_OBJECT_ID
    assert azure.tokens[password] == "https://redis.azure.com/"
    assert azure.token_requests() == [("https://redis.azure.com/", MI_CLIENT_ID)]


def test_a_plain_redis_url_keeps_no_credential_provider(make_sample: Callable[..., Flask]) -> None:
    app = make_sample(REDIS_URL="redis://127.0.0.1:1/0", REDIS_ENTRA_AUTH="false", AZURE_CLIENT_ID=MI_CLIENT_ID)
    assert "credential_provider" not in app.config["SESSION_REDIS"].connection_pool.connection_kwargs


def test_secret_key_is_derived_from_the_vault_key_the_same_in_every_process(
    make_sample: Callable[..., Flask], azure: AzureEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    first = make_sample(SECRET_KEY_VAULT_KEY=azure.key_uri, AZURE_CLIENT_ID=MI_CLIENT_ID)
    second = make_sample(SECRET_KEY_VAULT_KEY=azure.key_uri, AZURE_CLIENT_ID=MI_CLIENT_ID)
    key = first.config["SECRET_KEY"]
    assert key == second.config["SECRET_KEY"] and len(key) == 64
    assert azure.token_requests() == [("https://vault.azure.net", MI_CLIENT_ID)] * 2
    (sign,) = {json.dumps(r["body"]) for r in azure.requests if r["path"].endswith("/sign")}
    assert key not in sign  # what goes to Key Vault is the fixed text's digest only
    # Another key gives another SECRET_KEY: it is the vault key that makes it secret.
    from cryptography.hazmat.primitives.asymmetric import rsa

    azure.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert make_sample(SECRET_KEY_VAULT_KEY=azure.key_uri, AZURE_CLIENT_ID=MI_CLIENT_ID).config["SECRET_KEY"] != key
    # Sign-in works with it: the pending sign-in's cookie is encrypted with it.
    assert first.test_client().get("/login").status_code == 302
    logged = caplog.text
    assert key not in logged and all(token not in logged for token in azure.tokens)


def test_secret_key_vault_refusal_and_outage_are_named_without_a_token(
    make_sample: Callable[..., Flask], azure: AzureEmulator
) -> None:
    azure.vault_status = 403
    with pytest.raises(webapp.vault.SecretKeyUnavailable, match="HTTP 403 Forbidden.*Key Vault Crypto User") as info:
        make_sample(SECRET_KEY_VAULT_KEY=azure.key_uri, AZURE_CLIENT_ID=MI_CLIENT_ID)
    assert all(token not in str(info.value) for token in azure.tokens)
    # A client id the endpoint does not know: no token, and the setting to check is named.
    with pytest.raises(webapp.vault.SecretKeyUnavailable, match="AZURE_CLIENT_ID"):
        make_sample(SECRET_KEY_VAULT_KEY=azure.key_uri, AZURE_CLIENT_ID="not-this-identity")
    # Key Vault down.
    closed = f"https://127.0.0.1:{free_port()}/keys/flask-secret-key"
    with pytest.raises(webapp.vault.SecretKeyUnavailable, match="did not answer at 127.0.0.1"):
        make_sample(SECRET_KEY_VAULT_KEY=closed, AZURE_CLIENT_ID=MI_CLIENT_ID)


@pytest.mark.parametrize(
    "uri",
    [
        "http://v.vault.azure.net/keys/k",  # the token would travel in clear
        "https://v.vault.azure.net/secrets/k",
        "https://v.vault.azure.net/keys/k?x=1",
        "https://user@v.vault.azure.net/keys/k",
        "https://v.vault.azure.net/keys/k/1/2",
        "v.vault.azure.net/keys/k",
    ],
)
def test_secret_key_vault_key_must_be_a_key_vault_key_uri(uri: str) -> None:
    # Checked before any token is asked for: the managed identity's token goes to that address.
    with pytest.raises(ValueError, match="SECRET_KEY_VAULT_KEY must be a Key Vault key's URI"):
        webapp.vault.secret_key_from_vault_key(uri, client_id=MI_CLIENT_ID)


def test_health_answers_without_the_session_store_the_provider_or_a_trusted_host(
    make_sample: Callable[..., Flask], idp: LocalProvider
) -> None:
    # Redis down (nothing listens on port 1) and the provider unreachable.
    app = make_sample(REDIS_URL="redis://127.0.0.1:1/0", IDENTITY_AUTHORITY="https://127.0.0.1:1/tenant")
    app.testing = False  # errors become pages, as in production
    client = app.test_client()
    client.set_cookie("session", secrets.token_urlsafe(32))
    response = client.get("/health", headers={"Host": "10.0.0.7:8181"})  # not a trusted host
    assert response.status_code == 200 and response.get_data() == b"ok\n"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    head = client.head("/health")
    assert head.status_code == 200 and head.get_data() == b""
    # (tests/test_sample_redis.py shows a signed-in session's cookie on a page with Redis down: a 503.)
    # Other methods and paths are Flask's as before.
    fresh = app.test_client()
    assert fresh.post("/health").status_code == 404  # Flask has no such route
    assert fresh.get("/health/x").status_code == 404


def gunicorn_config(environ: dict[str, str]) -> str:
    """What gunicorn resolves from sample/gunicorn.conf.py (``--print-config``)."""
    env = {**os.environ, **environ}
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "app:app"],
        cwd=SAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_gunicorn_worker_count_comes_from_gunicorn_workers(idp: LocalProvider) -> None:
    environ = {**sample_environ(idp, REDIS_URL="redis://127.0.0.1:1/0"), "SECRET_KEY": "k" * 64}
    assert re.search(r"^workers\s*=\s*5$", gunicorn_config({**environ, "GUNICORN_WORKERS": "5"}), re.M)
    assert re.search(r"^threads\s*=\s*4$", gunicorn_config({**environ, "GUNICORN_WORKERS": "5"}), re.M)
    assert re.search(r"^workers\s*=\s*1$", gunicorn_config({**environ, "GUNICORN_WORKERS": ""}), re.M)

    namespace: dict[str, Any] = {}
    exec(compile((SAMPLE / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    worker_count = namespace["worker_count"]
    assert worker_count({"GUNICORN_WORKERS": " 9 "}) == 9 and worker_count({}) is None
    for wrong in ("0", "-1", "two", "1e3", "²", "66", "9" * 400):
        with pytest.raises(ValueError, match="GUNICORN_WORKERS must be a whole number"):
            worker_count({"GUNICORN_WORKERS": wrong})
