"""Settings resolution and validation, session store choice, blueprint layout (no provider needed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.sessions import SecureCookieSessionInterface
from flask_session.cachelib import CacheLibSessionInterface

from identity_flask import Auth, ConfigurationError
from identity_flask.config import resolve

AUTHORITY = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555"
BASE: dict[str, Any] = {
    "client_id": "cid",
    "client_credential": "secret",
    "redirect_uri": "http://localhost:5000/getAToken",
    "authority": AUTHORITY,
}


def new_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("cfgtest", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="x", **config)
    return app


def settings_of(tmp_path: Path, **given: Any) -> Any:
    return resolve(new_app(tmp_path), {**BASE, **given})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"client_id": None}, "IDENTITY_CLIENT_ID"),
        ({"client_credential": None}, "IDENTITY_CLIENT_CREDENTIAL"),
        ({"redirect_uri": None}, "Register one in your app registration"),
        ({"redirect_uri": "getAToken"}, "must be an http(s) URL or an absolute path"),
        ({"redirect_uri": "http://localhost/cb?x=1"}, "query or fragment"),
        ({"authority": None}, "No authority is configured"),
        ({"oidc_authority": "https://idp.example/v2.0"}, "these are all set: authority, oidc_authority"),
        ({"b2c_tenant_name": "contoso", "b2c_signup_signin_user_flow": "B2C_1_x"}, "authority, b2c"),
        ({"authority": None, "b2c_tenant_name": "contoso"}, "IDENTITY_B2C_SIGNUP_SIGNIN_USER_FLOW"),
        ({"authority": None, "b2c_signup_signin_user_flow": "B2C_1_x"}, "IDENTITY_B2C_TENANT_NAME"),
        ({"authority": "http://login.microsoftonline.com/t"}, "must be an https:// URL"),
        ({"authority": "https://login.microsoftonline.com"}, "must name a tenant in its path"),
        ({"response_mode": "fragment"}, "'query' or 'form_post'"),
    ],
)
def test_bad_settings_fail_fast_naming_the_setting(tmp_path: Path, given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_of(tmp_path, **given)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("client_id", 1234),
        ("client_credential", 1234),
        ("authority", 5),
        ("post_logout_view", 5),
        ("timeout", "abc"),
        ("timeout", 0),
        ("timeout", "-1"),
        ("timeout", "nan"),
        ("timeout", True),
        ("sign_in_timeout", "ten minutes"),
        ("sign_in_timeout", 0),
        ("sign_in_timeout", 1.5),
        ("max_pending_sign_ins", 0),
        ("max_pending_sign_ins", "-1"),
        ("max_pending_sign_ins", 33),
        ("timeout", "1e10"),  # would overflow a socket's timeout on the first request
        ("timeout", 10**400),
        ("sign_in_timeout", 10**12),  # a cookie expiry past the year 9999
        ("groups_cache_seconds", "1e9"),
        ("prompt", "bogus"),
        ("prompt", "Login"),
        ("scopes", "openid User.Read"),
        ("scopes", ["User.Read", "offline_access"]),
        ("scopes", "Profile"),
        ("scopes", 5),
        ("scopes", ["User.Read", 5]),
        ("allowed_tenants", "contoso.onmicrosoft.com"),
        ("allowed_tenants", 5),
        ("client_credential", {"private_key": "nope", "thumbprint": "AB"}),
        ("client_credential", {"private_key": "-----BEGIN PRIVATE KEY-----"}),
        ("client_credential", {"private_key_pfx_path": "/nonexistent/cert.pfx"}),
        ("client_credential", {"client_assertion": ""}),
        ("client_credential", {"passphrase": "x"}),
    ],
)
def test_each_bad_value_fails_at_start_up_naming_its_setting(tmp_path: Path, name: str, value: Any) -> None:
    app = new_app(tmp_path, **{f"IDENTITY_{name.upper()}": value})
    given = {**BASE, name: None}
    with pytest.raises(ConfigurationError, match=f"IDENTITY_{name.upper()}"):
        Auth(app, **{k: v for k, v in given.items() if v is not None})


@pytest.mark.parametrize("key", [12345, ["a", "list"]], ids=["int", "list"])
def test_a_secret_key_that_is_not_text_fails_at_start_up(tmp_path: Path, key: Any) -> None:
    """A SECRET_KEY of another type would turn every sign-in into a 500 (and crash the doctor)."""
    app = new_app(tmp_path)
    app.config["SECRET_KEY"] = key
    with pytest.raises(ConfigurationError, match="SECRET_KEY must be a string or bytes, got"):
        Auth(app, **BASE)


def test_a_bad_client_credential_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_of(tmp_path, client_credential=["s3cr3t-value"])
    assert "IDENTITY_CLIENT_CREDENTIAL" in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_numbers_and_lists_arrive_as_environment_strings(tmp_path: Path) -> None:
    app = new_app(
        tmp_path,
        IDENTITY_TIMEOUT="2.5",
        IDENTITY_SIGN_IN_TIMEOUT="300",
        IDENTITY_MAX_PENDING_SIGN_INS="3",
        IDENTITY_PROMPT="select_account",
        IDENTITY_ALLOWED_TENANTS="AAAAAAAA-2222-3333-4444-555555555555, 66666666-7777-8888-9999-000000000000",
    )
    settings = resolve(app, BASE)
    assert (settings.timeout, settings.sign_in_timeout, settings.max_pending_sign_ins) == (2.5, 300, 3)
    assert settings.prompt == "select_account"
    assert settings.allowed_tenants == (
        "aaaaaaaa-2222-3333-4444-555555555555",
        "66666666-7777-8888-9999-000000000000",
    )
    assert resolve(new_app(tmp_path), BASE).allowed_tenants == ()


@pytest.mark.parametrize("scopes", [["openid"], ["User.Read", "offline_access"], "User.Read", [5]])
def test_login_required_refuses_bad_scopes_when_decorating(scopes: Any) -> None:
    auth = Auth(**BASE)
    with pytest.raises(ConfigurationError, match=r"login_required\(scopes=\.\.\.\)"):
        auth.login_required(scopes=scopes)


def test_redis_sessions_without_the_redis_package_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault no real setup here can produce: the redis package missing from this virtualenv.
    monkeypatch.setitem(sys.modules, "redis", None)
    app = new_app(tmp_path, SESSION_TYPE="redis")
    with pytest.raises(ConfigurationError, match=re.escape("pip install identity-flask[redis]")):
        Auth(app, **BASE)


def test_one_auth_on_two_apps_keeps_each_apps_scopes(tmp_path: Path) -> None:
    auth = Auth(**BASE)
    bp = Blueprint("mail", __name__)

    @bp.route("/inbox")
    @auth.login_required(scopes=["Mail.Read"])  # decorated before any init_app, as in factories
    def inbox(*, context: dict[str, Any]) -> str:
        return "inbox"

    first = new_app(tmp_path, IDENTITY_SCOPES="Calendars.Read")
    auth.init_app(first)
    first.register_blueprint(bp)
    second = new_app(tmp_path / "2")
    auth.init_app(second)
    with first.test_request_context():
        assert first.extensions["identity"].known_scopes == {"Calendars.Read", "Mail.Read"}
    with second.test_request_context():
        assert second.extensions["identity"].known_scopes == set()
    for scope in ("Calendars.Read", "Mail.Read"):
        refused = second.test_client().get(f"/login?scopes={scope}")
        assert refused.status_code == 400
        assert "scopes this app does not use" in refused.get_data(as_text=True)


def test_settings_come_from_app_config_when_not_given(tmp_path: Path) -> None:
    app = new_app(
        tmp_path, **{f"IDENTITY_{k.upper()}": v for k, v in BASE.items()}, IDENTITY_SCOPES="User.Read Mail.Read"
    )
    settings = resolve(app, {})
    assert settings.client_id == "cid"
    assert settings.authority.url == AUTHORITY and settings.authority.kind == "entra"
    assert settings.scopes == ("User.Read", "Mail.Read")
    assert settings.redirect_path == "/getAToken"


@pytest.mark.parametrize(
    ("raw", "expected"), [("false", False), ("True", True), ("0", False), (None, None), (True, True)]
)
def test_boolean_settings_accept_environment_strings(tmp_path: Path, raw: Any, expected: bool | None) -> None:
    app = new_app(tmp_path, IDENTITY_INSTANCE_DISCOVERY=raw)
    assert resolve(app, BASE).instance_discovery is expected


def test_a_boolean_setting_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="IDENTITY_INSTANCE_DISCOVERY"):
        resolve(new_app(tmp_path, IDENTITY_INSTANCE_DISCOVERY="maybe"), BASE)


def test_constructor_arguments_win_over_app_config(tmp_path: Path) -> None:
    app = new_app(tmp_path, IDENTITY_CLIENT_ID="from-config", IDENTITY_TIMEOUT=3)
    settings = resolve(app, {**BASE, "client_id": "from-argument"})
    assert settings.client_id == "from-argument"
    assert settings.timeout == 3.0


def test_prefixed_environment_variables_configure_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        monkeypatch.setenv(f"FLASK_IDENTITY_{key.upper()}", value)
    monkeypatch.setenv("FLASK_IDENTITY_CLIENT_CREDENTIAL", '{"private_key": "-----BEGIN k", "thumbprint": "t"}')
    app = new_app(tmp_path)
    app.config.from_prefixed_env()
    settings = resolve(app, {})
    assert settings.client_credential == {"private_key": "-----BEGIN k", "thumbprint": "t"}
    assert settings.authority.url == AUTHORITY


@pytest.mark.parametrize(
    ("given", "kind", "url", "discovery"),
    [
        ({}, "entra", AUTHORITY, None),
        (
            {"authority": "https://contoso.ciamlogin.com/contoso.onmicrosoft.com"},
            "entra",
            "https://contoso.ciamlogin.com/contoso.onmicrosoft.com",
            False,
        ),
        (
            {"authority": None, "oidc_authority": "https://id.example.com/t/v2.0/"},
            "oidc",
            "https://id.example.com/t/v2.0",
            None,
        ),
        (
            {"authority": None, "b2c_tenant_name": "contoso", "b2c_signup_signin_user_flow": "B2C_1_susi"},
            "b2c",
            "https://contoso.b2clogin.com/contoso.onmicrosoft.com/B2C_1_susi",
            False,
        ),
        (
            {
                "authority": None,
                "b2c_tenant_name": "contoso",
                "b2c_signup_signin_user_flow": "B2C_1_susi",
                "b2c_authority_host": "login.contoso.com",
            },
            "b2c",
            "https://login.contoso.com/contoso.onmicrosoft.com/B2C_1_susi",
            False,
        ),
    ],
)
def test_each_authority_kind_resolves(
    tmp_path: Path, given: dict[str, Any], kind: str, url: str, discovery: Any
) -> None:
    authority = settings_of(tmp_path, **given).authority
    assert (authority.kind, authority.url) == (kind, url)
    kwargs = authority.msal_kwargs(None)
    if kind == "oidc":
        assert kwargs == {"oidc_authority": url}
    else:
        assert kwargs == {"authority": url, "instance_discovery": discovery}


def test_b2c_user_flows_and_logout_endpoint(tmp_path: Path) -> None:
    settings = settings_of(
        tmp_path,
        authority=None,
        b2c_tenant_name="contoso",
        b2c_signup_signin_user_flow="B2C_1_susi",
        b2c_edit_profile_user_flow="B2C_1_edit",
        b2c_reset_password_user_flow="B2C_1_reset",
    )
    assert settings.edit_profile_authority.url.endswith("/contoso.onmicrosoft.com/B2C_1_edit")
    assert settings.reset_password_authority.url.endswith("/contoso.onmicrosoft.com/B2C_1_reset")
    assert settings.authority.logout_endpoint == settings.authority.url + "/oauth2/v2.0/logout"


def test_routes_sit_beside_the_redirect_path(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    Auth(app, **{**BASE, "redirect_uri": "https://app.example.com/auth/redirect"})
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("identity.")}
    assert rules == {
        "identity.login": "/auth/login",
        "identity.auth_response": "/auth/redirect",
        "identity.logout": "/auth/logout",
        "identity.frontchannel_logout": "/auth/frontchannel-logout",
    }
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_positional_client_id_as_in_identity_flask(tmp_path: Path) -> None:
    app = new_app(tmp_path, TRUSTED_HOSTS=["localhost"])  # a bare-path redirect_uri needs them
    Auth(app, "positional-id", client_credential="s", redirect_uri="/getAToken", authority=AUTHORITY)
    assert app.extensions["identity"].settings.client_id == "positional-id"


def test_init_app_twice_is_refused(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    auth = Auth(app, **BASE)
    with pytest.raises(ConfigurationError, match="already set up"):
        auth.init_app(app)


def test_one_auth_serves_several_apps_with_their_own_settings(tmp_path: Path) -> None:
    auth = Auth(client_credential="shared-secret", authority=AUTHORITY)
    first = new_app(tmp_path, IDENTITY_CLIENT_ID="one", IDENTITY_REDIRECT_URI="http://localhost/a/cb")
    second = new_app(tmp_path / "2", IDENTITY_CLIENT_ID="two", IDENTITY_REDIRECT_URI="http://localhost/b/cb")
    auth.init_app(first)
    auth.init_app(second)
    assert first.extensions["identity"].settings.client_id == "one"
    assert second.extensions["identity"].settings.client_id == "two"
    assert first.extensions["identity"].client is not second.extensions["identity"].client
    assert "/a/login" in {r.rule for r in first.url_map.iter_rules()}
    assert "/b/login" in {r.rule for r in second.url_map.iter_rules()}


def test_factory_and_blueprint_views(tmp_path: Path) -> None:
    auth = Auth(None, **BASE)
    bp = Blueprint("pages", __name__)

    @bp.route("/private")
    @auth.login_required
    def private(*, context: dict[str, Any]) -> str:
        return str(context["user"])

    def create_app() -> Flask:
        app = new_app(tmp_path)
        auth.init_app(app)
        app.register_blueprint(bp)
        return app

    client = create_app().test_client()
    response = client.get("/private")
    assert response.status_code == 302
    assert response.location == "/login?next=/private"


def test_unset_session_type_gets_a_file_store_in_the_instance_folder(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    Auth(app, **BASE)
    assert isinstance(app.session_interface, CacheLibSessionInterface)
    assert (tmp_path / "instance" / "identity_sessions").is_dir()
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_REFRESH_EACH_REQUEST"] is False  # see test_concurrency.py


def test_filesystem_session_type_maps_to_the_cachelib_file_store(tmp_path: Path) -> None:
    app = new_app(tmp_path, SESSION_TYPE="filesystem", SESSION_FILE_DIR=str(tmp_path / "files"))
    Auth(app, **BASE)  # no deprecation warning (warnings are errors in this suite)
    assert isinstance(app.session_interface, CacheLibSessionInterface)
    assert (tmp_path / "files").is_dir()


def test_an_app_configured_session_interface_is_left_untouched(tmp_path: Path) -> None:
    from cachelib.simple import SimpleCache
    from flask_session import Session

    app = new_app(tmp_path, SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache())
    Session(app)
    interface = app.session_interface
    Auth(app, **BASE)
    assert app.session_interface is interface


@pytest.mark.parametrize("session_type", ["null", "cookie"])
def test_cookie_sessions_are_refused_with_the_reason(tmp_path: Path, session_type: str) -> None:
    app = new_app(tmp_path, SESSION_TYPE=session_type)
    with pytest.raises(ConfigurationError, match="does not fit in a"):
        Auth(app, **BASE)


def test_a_custom_cookie_session_interface_is_refused(tmp_path: Path) -> None:
    class SignedCookies(SecureCookieSessionInterface):
        pass

    app = new_app(tmp_path)
    app.session_interface = SignedCookies()
    with pytest.raises(ConfigurationError, match="cookie-based"):
        Auth(app, **BASE)


def test_form_post_needs_samesite_none_and_secure_cookies(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SESSION_COOKIE_SAMESITE = 'None'"):
        Auth(new_app(tmp_path), **BASE, response_mode="form_post")
    app = new_app(tmp_path / "ok", SESSION_COOKIE_SAMESITE="None", SESSION_COOKIE_SECURE=True)
    Auth(app, **BASE, response_mode="form_post")
    assert app.extensions["identity"].settings.response_mode == "form_post"


def test_using_the_decorator_before_init_app_says_what_to_do(tmp_path: Path) -> None:
    auth = Auth(**BASE)
    app = new_app(tmp_path)

    @app.route("/p")
    @auth.login_required(scopes=["User.Read"])
    def p(*, context: dict[str, Any]) -> str:
        return "never"

    app.config["SESSION_TYPE"] = "cachelib"
    from cachelib.simple import SimpleCache
    from flask_session import Session

    app.config["SESSION_CACHELIB"] = SimpleCache()
    Session(app)
    with app.test_request_context("/p"):
        from flask import session

        session["_identity_user"] = {"sub": "x"}
        session["_identity_account"] = "acc"
        with pytest.raises(ConfigurationError, match="call auth.init_app"):
            p()


def test_post_logout_view_may_be_a_view_function_as_in_identity_flask(tmp_path: Path) -> None:
    app = new_app(tmp_path)

    def goodbye() -> str:
        return "bye"

    app.add_url_rule("/goodbye", "farewell", goodbye)
    Auth(app, **BASE, post_logout_view=goodbye)
    with app.test_request_context("/"):
        # On the redirect URI's origin, not the request's Host.
        assert app.extensions["identity"].post_logout_url() == "http://localhost:5000/goodbye"


def test_anonymous_visits_to_protected_pages_store_no_session(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    auth = Auth(app, **BASE)

    @app.route("/private")
    @auth.login_required
    def private(*, context: dict[str, Any]) -> str:
        return "private"

    client = app.test_client()
    for accept in ("text/html", "application/json"):
        assert client.get("/private", headers={"Accept": accept}).status_code in (302, 401)
    assert client.get_cookie("session") is None
    assert list((tmp_path / "instance" / "identity_sessions").iterdir()) == []


@pytest.mark.parametrize("fallbacks", ["old-key", ["old-key", 5]])
def test_secret_key_fallbacks_must_be_a_list_of_keys(tmp_path: Path, fallbacks: Any) -> None:
    app = new_app(tmp_path, SECRET_KEY_FALLBACKS=fallbacks, **{f"IDENTITY_{k.upper()}": v for k, v in BASE.items()})
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        Auth(app)


def test_an_app_without_a_secret_key_does_not_start(tmp_path: Path) -> None:
    app = new_app(tmp_path, **{f"IDENTITY_{k.upper()}": v for k, v in BASE.items()})
    app.config["SECRET_KEY"] = None
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        Auth(app)
