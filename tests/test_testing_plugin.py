"""The pytest plugin for users' apps: sign-in without a provider, offline metadata, fixtures."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SignIn
from flask import Flask
from flask.testing import FlaskClient
from testapp import create_app

from identity_flask import session_data, testing

pytest_plugins = ["pytester"]

TENANT = "contoso.onmicrosoft.com"

#: One setting per authority kind, none of which is reachable from the tests.
AUTHORITIES: dict[str, dict[str, str]] = {
    "entra": {"authority": f"https://login.microsoftonline.com/{TENANT}"},
    "external_id": {"authority": f"https://contoso.ciamlogin.com/{TENANT}"},
    "b2c": {
        "b2c_tenant_name": "contoso",
        "b2c_signup_signin_user_flow": "B2C_1_signupsignin",
        "b2c_edit_profile_user_flow": "B2C_1_editprofile",
    },
    "oidc": {"oidc_authority": "https://accounts.example.com/tenant/v2.0"},
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any outgoing connection fail the test: the helpers must need none."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a test helper tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def offline_app(tmp_path: Path, no_network: None) -> Callable[..., Flask]:
    def build(kind: str = "entra") -> Flask:
        return create_app(
            str(tmp_path / "sessions"),
            client_id="client-1",
            client_credential="not-a-real-secret",
            redirect_uri="http://localhost/getAToken",
            **AUTHORITIES[kind],
        )

    return build


@pytest.fixture
def app(offline_app: Callable[..., Flask]) -> Flask:
    """Overrides the suite's provider-backed app, so the plugin's fixtures get an offline one."""
    return offline_app()


@pytest.mark.parametrize("kind", sorted(AUTHORITIES))
def test_signed_in_user_reaches_protected_and_scoped_views(offline_app: Callable[..., Flask], kind: str) -> None:
    client = offline_app(kind).test_client()
    claims = {"sub": "ada", "oid": "oid-ada", "tid": "tid-1", "name": "Ada"}
    assert testing.sign_in(client, claims, tokens={"User.Read": "token-123"}) == claims
    assert client.get("/whoami").get_json() == {"sub": "ada", "name": "Ada"}
    assert client.get("/token").get_json() == {"sub": "ada", "access_token": "token-123"}


@pytest.mark.parametrize("kind", sorted(AUTHORITIES))
def test_scope_without_a_token_asks_for_consent(offline_app: Callable[..., Flask], kind: str) -> None:
    app = offline_app(kind)
    client = app.test_client()
    testing.sign_in(client, tokens={"User.Read": "token-123"})
    response = client.get("/files")
    assert response.location == testing.login_url(app, "/files", ["Files.Read"])
    assert client.get("/files", headers={"Accept": "application/json"}).status_code == 401


def test_one_token_may_serve_several_scopes_and_the_view_sees_the_token_fields(app: Flask) -> None:
    client = app.test_client()
    testing.sign_in(client, tokens={"Files.Read User.Read": "token-many"}, expires_in=7200)
    body = client.get("/files").get_json()
    assert body["scopes"] == ["Files.Read", "User.Read"]  # what the token was granted
    assert 7000 < body["expires_in"] <= 7200
    assert body["keys"] == ["access_token", "expires_in", "scopes", "token_type", "user"]
    assert client.get("/token").get_json()["access_token"] == "token-many"


def test_default_claims_and_current_user(app: Flask) -> None:
    client = app.test_client()
    user = testing.sign_in(client)
    assert user == testing.DEFAULT_CLAIMS
    assert "Test User" in client.get("/").get_data(as_text=True)


def test_token_close_to_expiry_sends_the_user_to_sign_in_again(app: Flask) -> None:
    client = app.test_client()
    testing.sign_in(client, tokens={"User.Read": "short"}, expires_in=60)
    assert client.get("/token").location == testing.login_url(app, "/token", ["User.Read"])


def test_signed_out_behaviour(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/profile?tab=2")
    assert response.status_code == 302
    assert response.location == testing.login_url(app, "/profile?tab=2")
    api = client.get("/whoami", headers={"Accept": "application/json"})
    assert api.status_code == 401
    assert api.get_json()["error"] == "login_required"


def test_sign_out_forgets_the_user(app: Flask) -> None:
    client = app.test_client()
    testing.sign_in(client)
    assert client.get("/whoami").status_code == 200
    testing.sign_out(client)
    assert client.get("/whoami").status_code == 302
    with client.session_transaction() as session:
        assert not set(session) & set(session_data.KEYS)


def test_offline_app_builds_sign_in_and_sign_out_redirects(app: Flask) -> None:
    testing.offline(app)
    client = app.test_client()
    login = client.get("/login?next=/profile")
    assert login.location.startswith(f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/authorize?")
    testing.sign_in(client)
    logout = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert logout.location.startswith(f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/logout?")
    assert client.get("/profile").status_code == 302


def test_oidc_logout_reads_the_generated_metadata(offline_app: Callable[..., Flask]) -> None:
    client = offline_app("oidc").test_client()
    testing.sign_in(client)
    logout = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert logout.location.startswith("https://accounts.example.com/tenant/oauth2/v2.0/logout?")


def test_sign_in_on_an_app_without_the_extension_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        testing.sign_in(Flask(__name__).test_client())


def test_fixtures_sign_in_the_default_user(signed_in_client: FlaskClient) -> None:
    assert signed_in_client.get("/token").get_json() == {"sub": "test-user", "access_token": "test-access-token"}


class TestOverriddenFixtures:
    @pytest.fixture
    def identity_user(self) -> dict[str, Any]:
        return {"sub": "grace", "name": "Grace"}

    @pytest.fixture
    def identity_tokens(self) -> dict[str, str]:
        return {"Files.Read": "files-token"}

    def test_chosen_user_and_tokens(self, signed_in_client: FlaskClient) -> None:
        assert signed_in_client.get("/whoami").get_json() == {"sub": "grace", "name": "Grace"}
        assert "Files.Read" in signed_in_client.get("/files").get_json()["scopes"]
        assert signed_in_client.get("/token").status_code == 302


def test_helper_writes_the_session_a_real_sign_in_writes(make_app: Callable[..., Flask], sign_in: SignIn) -> None:
    real_app = make_app()
    real = real_app.test_client()
    sign_in(real, "/token", login="alice")
    with real.session_transaction() as session:
        real_keys = {k: type(v) for k, v in session.items()}
        claims = session[session_data.USER_KEY]
    fake = real_app.test_client()
    assert testing.sign_in(fake, claims, tokens={"User.Read": "token-123"}) == claims
    with fake.session_transaction() as session:
        assert {k: type(v) for k, v in session.items()} == real_keys
    assert fake.get("/token").get_json() == {"sub": "alice", "access_token": "token-123"}


USER_CONFTEST = """
import socket

import pytest
from flask import Flask, jsonify

from identity_flask import Auth


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"network access to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def app(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test",
        IDENTITY_CLIENT_ID="00000000-0000-0000-0000-00000000c1d0",
        IDENTITY_CLIENT_CREDENTIAL="test-secret",
        IDENTITY_REDIRECT_URI="http://localhost:5000/getAToken",
        IDENTITY_AUTHORITY="https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555",
    )
    auth = Auth(app)

    @app.route("/profile")
    @auth.login_required
    def profile(*, context):
        return jsonify(name=context["user"]["name"])

    @app.route("/me/photo")
    @auth.login_required(scopes=["User.Read"])
    def photo(*, context):
        return jsonify(token=context["access_token"])

    return app
"""

USER_TESTS = """
import pytest

from identity_flask.testing import login_url, sign_in


def test_signed_in_user_sees_their_profile(app):
    client = app.test_client()
    sign_in(client, {"sub": "ada", "name": "Ada Lovelace"}, tokens={"User.Read": "token-123"})
    assert client.get("/profile").get_json() == {"name": "Ada Lovelace"}
    assert client.get("/me/photo").get_json() == {"token": "token-123"}


def test_signed_out_user_is_sent_to_sign_in(app):
    response = app.test_client().get("/profile")
    assert response.status_code == 302
    assert response.location == login_url(app, next_url="/profile")


@pytest.fixture
def identity_user():
    return {"sub": "grace", "name": "Grace Hopper"}


def test_with_the_fixture(signed_in_client):
    assert signed_in_client.get("/profile").get_json() == {"name": "Grace Hopper"}
    assert signed_in_client.get("/me/photo").get_json() == {"token": "test-access-token"}
"""


def test_plugin_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_user_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_plugin_is_registered_through_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixtures="""
        def test_listed(request):
            assert request.config.pluginmanager.has_plugin("identity_flask")
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--fixtures")
    result.stdout.fnmatch_lines(["*signed_in_client*"])
    assert pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider").ret == 0
