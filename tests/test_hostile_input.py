"""Hostile and malformed input at the sign-in endpoints, one table.

Every case is one attack on a browser's sign-in, against the real local provider.
Each must end in the stated status (a 4xx page, or for provider failures the
deliberate 502/503; never a 500), with no traceback in the body, no unescaped
markup from the request, and the session still usable afterwards: the user who
was signed in still is, or a signed-out browser can still sign in.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cachelib.file import FileSystemCache
from conftest import APP_ORIGIN, REDIRECT_URI, SignIn, b2c_settings, entra_settings
from flask import Flask, jsonify
from flask.testing import FlaskClient
from localidp import B2C_RESET_PASSWORD, LocalProvider, query_of
from werkzeug.test import TestResponse

from identity_flask import Auth, ConfigurationError, pending

CALLBACK = urlsplit(REDIRECT_URI).path
JSON = {"Accept": "application/json"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
SCRIPT = "<script>alert(1)</script>"


class Attack:
    """What a case may use: the victim's browser, the provider, helpers."""

    def __init__(self, app: Flask, client: FlaskClient, idp: LocalProvider, sign_in: SignIn) -> None:
        self.app = app
        self.client = client
        self.idp = idp
        self.sign_in = sign_in

    def pending(self, client: FlaskClient | None = None, **args: str) -> tuple[str, str]:
        """Start a sign-in in ``client``; return the provider URL and its state."""
        auth_uri = self.sign_in.start(client or self.client, "/login?" + urlencode({"next": "/whoami", **args}))
        return auth_uri, query_of(auth_uri)["state"]

    def provider_answer(self, client: FlaskClient | None = None, **kw: Any) -> dict[str, str]:
        """Start a sign-in and play the user at the provider; return the callback's query."""
        auth_uri, _ = self.pending(client)
        return query_of(self.idp.sign_in(auth_uri, **kw))

    def callback(self, query: dict[str, str] | str, client: FlaskClient | None = None) -> TestResponse:
        client = client or self.client
        return client.get(f"{CALLBACK}?{query if isinstance(query, str) else urlencode(query)}")

    def error_answer(self, **params: str) -> TestResponse:
        """The provider sends the browser back with an error (as a real redirect would)."""
        _, state = self.pending()
        return self.callback({"state": state, **params})

    def stranger(self) -> FlaskClient:
        """A second browser, with cookies disabled so that a raw Cookie header goes through."""
        return self.app.test_client(use_cookies=False)


@contextlib.contextmanager
def a_day_later() -> Iterator[None]:
    """Move the clock pending sign-ins are dated by one day ahead."""
    saved = pending.clock
    pending.clock = lambda: time.time() + 24 * 3600
    try:
        yield
    finally:
        pending.clock = saved


# --- the attacks --------------------------------------------------------------------------------


def missing_state(a: Attack) -> TestResponse:
    a.pending()
    return a.callback({"code": "abc"})


def forged_state(a: Attack) -> TestResponse:
    a.pending()
    return a.callback({"code": "abc", "state": "forged-state-value"})


def replayed_state(a: Attack) -> TestResponse:
    answer = a.provider_answer()
    assert a.callback(answer).status_code == 302
    return a.callback(answer)


def expired_state(a: Attack) -> TestResponse:
    auth_uri, _ = a.pending()
    answer = query_of(a.idp.sign_in(auth_uri))
    with a_day_later():
        return a.callback(answer)


def state_from_another_browser(a: Attack) -> TestResponse:
    other = a.app.test_client()
    return a.callback(a.provider_answer(other, login="mallory"))  # login CSRF: the victim gets mallory's code


def replayed_code(a: Attack) -> TestResponse:
    used = a.provider_answer()
    assert a.callback(used).status_code == 302
    _, state = a.pending()
    return a.callback({"code": used["code"], "state": state})


def forged_code(a: Attack) -> TestResponse:
    _, state = a.pending()
    return a.callback({"code": "forged-code", "state": state})


def oversized_code(a: Attack) -> TestResponse:
    _, state = a.pending()
    return a.callback({"code": "A" * 200_000, "state": state})


def access_denied(a: Attack) -> TestResponse:
    auth_uri, _ = a.pending()
    return a.sign_in.finish(a.client, a.idp.sign_in(auth_uri, action="cancel"))


def b2c_forgot_password(a: Attack) -> TestResponse:
    auth_uri, _ = a.pending()
    return a.sign_in.finish(a.client, a.idp.sign_in(auth_uri, action="forgot"))


def server_error(a: Attack) -> TestResponse:
    return a.error_answer(error="server_error", error_description="The provider broke.")


def temporarily_unavailable(a: Attack) -> TestResponse:
    return a.error_answer(error="temporarily_unavailable", error_description="Try again later.")


def unknown_error_code(a: Attack) -> TestResponse:
    return a.error_answer(error="made_up_error_42", error_description="Nobody knows this one.")


def script_in_error_description(a: Attack) -> TestResponse:
    response = a.error_answer(error="invalid_request", error_description=f"Bad {SCRIPT} <b onmouseover=x>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.get_data(as_text=True)
    return response


def script_in_error_code(a: Attack) -> TestResponse:
    return a.error_answer(error=f"x{SCRIPT}", error_description="y")


def huge_error_description(a: Attack) -> TestResponse:
    return a.error_answer(error="invalid_request", error_description="D" * 100_000)


def oversized_query(a: Attack) -> TestResponse:
    a.pending()
    return a.callback({"state": "S" * 100_000, "code": "C" * 100_000})


def malformed_percent_encoding(a: Attack) -> TestResponse:
    a.pending()
    return a.callback("state=%ZZ%&code=%E0%A4%A&error_description=%FF%FE")


def repeated_state_parameters(a: Attack) -> TestResponse:
    answer = a.provider_answer()
    return a.callback(f"state=forged&{urlencode(answer)}")


def malformed_form_body(a: Attack) -> TestResponse:
    a.pending()
    return a.client.post(CALLBACK, data=b"\xff\xfe=%%%&state=%ZZ&&==", content_type="application/x-www-form-urlencoded")


def oversized_form_body(a: Attack) -> TestResponse:
    a.pending()
    body = "state=" + "x" * 2_000_000
    return a.client.post(CALLBACK, data=body, content_type="application/x-www-form-urlencoded")


def broken_multipart_body(a: Attack) -> TestResponse:
    a.pending()
    return a.client.post(
        CALLBACK, data=b"--x\r\nContent-Disposition: form-data\r\n", content_type="multipart/form-data"
    )


def json_body(a: Attack) -> TestResponse:
    _, state = a.pending()
    return a.client.post(CALLBACK, json={"state": state, "code": "abc"})


def post_when_get_was_asked(a: Attack) -> TestResponse:
    return a.client.post(CALLBACK, data=a.provider_answer())


def get_when_post_was_asked(a: Attack) -> TestResponse:
    return a.callback(a.provider_answer())  # the form_post app's provider answer, sent as a query


def next_target(target: str) -> Callable[[Attack], TestResponse]:
    def attack(a: Attack) -> TestResponse:
        return a.sign_in(a.client, "/login?" + urlencode({"next": target}))

    return attack


def tampered_cookie(a: Attack) -> TestResponse:
    cookie = a.client.get_cookie("session")
    assert cookie is not None
    flipped = cookie.value[:-1] + ("A" if cookie.value[-1] != "A" else "B")
    return a.stranger().get("/whoami", headers={**JSON, "Cookie": f"session={flipped}"})


def unknown_cookie(a: Attack) -> TestResponse:
    return a.stranger().get("/whoami", headers={**JSON, "Cookie": "session=0123456789abcdef0123456789abcdef"})


def path_traversal_cookie(a: Attack) -> TestResponse:
    return a.stranger().get("/whoami", headers={**JSON, "Cookie": "session=../../../../etc/passwd%00"})


def oversized_cookie(a: Attack) -> TestResponse:
    return a.stranger().get("/whoami", headers={**JSON, "Cookie": "session=" + "A" * 8000})


def tampered_cookie_at_callback(a: Attack) -> TestResponse:
    answer = a.provider_answer()
    cookie = a.client.get_cookie("session")
    assert cookie is not None
    return a.stranger().get(f"{CALLBACK}?{urlencode(answer)}", headers={"Cookie": f"session={cookie.value}x"})


def tampered_pending_sign_in(a: Attack) -> TestResponse:
    answer = a.provider_answer()
    name = pending.cookie_name(answer["state"])
    cookie = a.client.get_cookie(name)
    assert cookie is not None
    flipped = cookie.value[:-5] + ("AAAAA" if not cookie.value.endswith("AAAAA") else "BBBBB")
    a.client.set_cookie(name, flipped)
    return a.callback(answer)


def pending_sign_in_from_an_app_with_another_key(a: Attack) -> TestResponse:
    other = Flask("other_app")
    other.config.update(a.app.config, SECRET_KEY="another-apps-secret")
    other.session_interface = a.app.session_interface
    Auth(other)
    browser = other.test_client()
    answer = query_of(a.idp.sign_in_from(browser, "/login?next=/whoami"))
    name = pending.cookie_name(answer["state"])
    cookie = browser.get_cookie(name)
    assert cookie is not None
    a.client.set_cookie(name, cookie.value)
    return a.callback(answer)


def error_page_after_the_callback_is_not_cached(a: Attack) -> TestResponse:
    response = forged_state(a)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    return response


# Methods: no method runs a protected view's code without the check.


def anonymous_options_on_a_role_protected_delete(a: Attack) -> TestResponse:
    response = a.stranger().options("/items/report", headers={"Origin": "https://evil.example"})
    assert a.app.extensions["test_items"] == {"report": "quarterly figures"}, "the view ran"
    assert response.data == b""
    return response


def signed_in_options_without_the_role(a: Attack) -> TestResponse:
    response = a.client.options("/items/report")  # alice holds no Admin role
    assert a.app.extensions["test_items"] == {"report": "quarterly figures"}, "the view ran"
    return response


def delete_without_the_role(a: Attack) -> TestResponse:
    response = a.client.delete("/items/report", headers=JSON)
    assert a.app.extensions["test_items"] == {"report": "quarterly figures"}
    return response


# The Host header: every absolute URL comes from the configured redirect URI.


def host_header_at_login(a: Attack) -> TestResponse:
    response = a.stranger().get("/login?next=/whoami", headers={"Host": "evil.example"})
    assert query_of(response.location)["redirect_uri"] == REDIRECT_URI
    return response


def victim_cookie(a: Attack) -> dict[str, str]:
    cookie = a.client.get_cookie("session")
    assert cookie is not None
    return {"Cookie": f"session={cookie.value}"}


def host_header_at_logout(a: Attack) -> TestResponse:
    response = a.stranger().get("/logout", headers={"Host": "evil.example", **SAME_ORIGIN, **victim_cookie(a)})
    assert query_of(response.location)["post_logout_redirect_uri"] == APP_ORIGIN + "/"
    return response


def host_header_at_logout_with_the_provider_down(a: Attack) -> TestResponse:
    a.idp.fault("/.well-known/openid-configuration", status=503, times=5)
    response = a.stranger().get("/logout", headers={"Host": "evil.example", **SAME_ORIGIN, **victim_cookie(a)})
    assert response.location == APP_ORIGIN + "/"
    a.idp.clear_faults()
    return response


# Sign-out: only a request proven to come from this site signs the user out.


def logout(**headers: str) -> Callable[[Attack], TestResponse]:
    def attack(a: Attack) -> TestResponse:
        response = a.client.get("/logout", headers=headers)
        assert "Sign out?" in response.get_data(as_text=True)
        return response

    return attack


def logout_post_without_origin(a: Attack) -> TestResponse:
    return a.client.post("/logout")


def logout_post_from_another_site(a: Attack) -> TestResponse:
    return a.client.post("/logout", headers={"Origin": "https://evil.example"})


def string_roles_claim(a: Attack) -> TestResponse:
    other = a.app.test_client()
    finish_sign_in(other, a.sign_in, "stringroles")  # roles: "Admin", a string
    return other.get("/admin", headers=JSON)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    attack: Callable[[Attack], TestResponse]
    #: The status expected, or the statuses any of which is right.
    status: int | tuple[int, ...]
    #: The ``Location`` a redirect must have (prefix), when ``status`` is a redirect.
    location: str | None = None
    #: Whether the victim is signed in (as alice) before the attack.
    signed_in: bool = True
    #: ``entra``, ``b2c``, ``b2c_without_reset``, ``form_post`` or ``oidc``.
    app: str = "entra"
    #: Whether the victim is still signed in afterwards (``False``: the attack was a real sign-out).
    signed_in_after: bool = True


CASES: dict[str, Any] = {
    # state
    "state-missing": Case(missing_state, 400),
    "state-forged": Case(forged_state, 400),
    "state-replayed": Case(replayed_state, 400),
    "state-expired": Case(expired_state, 400, signed_in=False),
    "state-from-another-browser": Case(state_from_another_browser, 400),
    # authorization code
    "code-replayed": Case(replayed_code, 400),
    "code-forged": Case(forged_code, 400),
    "code-oversized": Case(oversized_code, 400),
    # provider error answers
    "provider-access_denied": Case(access_denied, 403, signed_in=False),
    "provider-AADB2C90118-forgot-password": Case(
        b2c_forgot_password, 302, location=f"/{B2C_RESET_PASSWORD}/oauth2/v2.0/authorize", signed_in=False, app="b2c"
    ),
    "provider-AADB2C90118-without-reset-flow": Case(b2c_forgot_password, 403, signed_in=False, app="b2c_without_reset"),
    "provider-server_error-is-502": Case(server_error, 502),
    "provider-temporarily_unavailable-is-503": Case(temporarily_unavailable, 503),
    "provider-unknown-error-code": Case(unknown_error_code, 400),
    "provider-script-in-error_description-escaped": Case(script_in_error_description, 400),
    "provider-script-in-error-code-escaped": Case(script_in_error_code, 400),
    "provider-huge-error_description": Case(huge_error_description, 400),
    # malformed requests
    "query-oversized": Case(oversized_query, 400),
    "query-malformed-percent-encoding": Case(malformed_percent_encoding, 400),
    "query-repeated-state": Case(repeated_state_parameters, 400),
    "form-malformed-body": Case(malformed_form_body, 400, app="form_post"),
    # Werkzeug refuses the body with 413 (3.1.8) or drops the over-limit field, which
    # leaves the callback without its state: 400 (3.1.9).
    "form-oversized-body": Case(oversized_form_body, (413, 400), app="form_post"),
    "form-broken-multipart": Case(broken_multipart_body, 400, app="form_post"),
    "form-json-body": Case(json_body, 400, app="form_post"),
    # the wrong method for the response mode
    "method-POST-when-GET-was-asked": Case(post_when_get_was_asked, 405),
    "method-GET-when-POST-was-asked": Case(get_when_post_was_asked, 405, app="form_post"),
    # hostile return targets: all land on "/"
    "next-scheme-relative": Case(next_target("//evil.example/x"), 302, location="/", signed_in=False),
    "next-absolute": Case(next_target("https://evil.example/"), 302, location="/", signed_in=False),
    "next-backslash": Case(next_target("/\\evil.example"), 302, location="/", signed_in=False),
    "next-backslashes": Case(next_target("\\\\evil.example"), 302, location="/", signed_in=False),
    "next-javascript": Case(next_target("javascript:alert(1)"), 302, location="/", signed_in=False),
    "next-encoded-slashes": Case(next_target("%2F%2Fevil.example"), 302, location="/", signed_in=False),
    "next-leading-tab": Case(next_target("\t//evil.example"), 302, location="/", signed_in=False),
    "next-triple-slash": Case(next_target("///evil.example"), 302, location="/", signed_in=False),
    "next-scheme-backslash": Case(next_target("https:\\\\evil.example"), 302, location="/", signed_in=False),
    # session cookies
    "cookie-tampered": Case(tampered_cookie, 401),
    "cookie-unknown": Case(unknown_cookie, 401),
    "cookie-path-traversal": Case(path_traversal_cookie, 401),
    "cookie-oversized": Case(oversized_cookie, 401),
    "cookie-tampered-at-callback": Case(tampered_cookie_at_callback, 400),
    # the pending sign-in cookie
    "pending-cookie-tampered": Case(tampered_pending_sign_in, 400),
    "pending-cookie-from-another-key": Case(pending_sign_in_from_an_app_with_another_key, 400),
    "callback-error-page-not-cached": Case(error_page_after_the_callback_is_not_cached, 400),
    # methods
    "options-anonymous-on-role-protected-delete": Case(anonymous_options_on_a_role_protected_delete, 200),
    "options-signed-in-without-the-role": Case(signed_in_options_without_the_role, 200),
    "delete-without-the-role": Case(delete_without_the_role, 403),
    "roles-claim-that-is-a-string": Case(string_roles_claim, 403),
    # the Host header
    "host-header-at-login": Case(host_header_at_login, 302),
    "host-header-at-logout": Case(host_header_at_logout, 302, signed_in_after=False),
    "host-header-at-logout-provider-down": Case(
        host_header_at_logout_with_the_provider_down, 302, signed_in_after=False, app="oidc"
    ),
    # sign-out from elsewhere
    "logout-cross-site-referer": Case(logout(Referer="https://evil.example/page"), 200),
    "logout-cross-site-origin": Case(logout(Origin="https://evil.example"), 200),
    "logout-null-origin": Case(logout(Origin="null"), 200),
    "logout-same-site-subdomain": Case(logout(**{"Sec-Fetch-Site": "same-site"}), 200),
    "logout-lookalike-referer": Case(logout(Referer=APP_ORIGIN + ".evil.example/"), 200),
    "logout-no-signal-at-all": Case(logout(), 200),
    "logout-unparsable-referer": Case(logout(Referer="http://[::1"), 200),
    "logout-unparsable-origin": Case(logout(Origin="http://["), 200),
    "logout-post-without-origin": Case(logout_post_without_origin, 400),
    "logout-post-from-another-site": Case(logout_post_from_another_site, 400),
}


def _form_post_app(idp: LocalProvider, directory: Path) -> Flask:
    app = Flask("form_post_app")
    app.config.update(
        SECRET_KEY="test-only-secret",
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(directory), threshold=0),
        SESSION_COOKIE_SAMESITE="None",
        SESSION_COOKIE_SECURE=True,
    )
    auth = Auth(app, **entra_settings(idp), response_mode="form_post")

    @app.route("/whoami")
    @auth.login_required
    def whoami(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["user"]["sub"])

    return app


def build(kind: str, make_app: Callable[..., Flask], idp: LocalProvider, tmp_path: Path) -> Flask:
    if kind == "b2c":
        return make_app(**b2c_settings(idp), authority=None)
    if kind == "b2c_without_reset":
        return make_app(**b2c_settings(idp, b2c_reset_password_user_flow=None), authority=None)
    if kind == "form_post":
        return _form_post_app(idp, tmp_path / "form_post_sessions")
    if kind == "oidc":
        return make_app(authority=None, oidc_authority=idp.oidc_authority)
    return make_app()


def whoami(client: FlaskClient) -> TestResponse:
    return client.get("/whoami", headers=JSON)


def finish_sign_in(client: FlaskClient, sign_in: SignIn, login: str) -> None:
    """Sign ``login`` in; the form_post app gets the provider's answer posted."""
    result = sign_in(client, "/login?next=/whoami", login=login)
    assert result.status_code == 302 and result.location == "/whoami", result.get_data(as_text=True)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_input(
    case: Case, make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, tmp_path: Path
) -> None:
    app = build(case.app, make_app, idp, tmp_path)
    client = app.test_client()
    if case.signed_in:
        finish_sign_in(client, sign_in, "alice")
        assert whoami(client).get_json()["sub"] == "alice"

    response = case.attack(Attack(app, client, idp, sign_in))

    body = response.get_data(as_text=True)
    expected = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in expected, body[:500]
    assert "Traceback" not in body and 'File "' not in body
    assert SCRIPT not in body and "<b onmouseover" not in body
    if case.location is not None:
        assert response.location == case.location or (case.location != "/" and case.location in response.location), (
            response.location
        )
    elif 400 <= response.status_code < 600 and response.status_code != 413:
        assert "text/html" in response.content_type or "json" in response.content_type

    # The session is still usable: the victim stays signed in, or can sign in.
    if case.signed_in and not case.signed_in_after:
        assert whoami(client).status_code == 401
        finish_sign_in(client, sign_in, "bob")
        assert whoami(client).get_json()["sub"] == "bob"
    elif case.signed_in:
        assert whoami(client).get_json()["sub"] == "alice"
    elif case.location == "/":
        assert whoami(client).get_json()["sub"] == "alice"  # the sign-in itself succeeded
    else:
        finish_sign_in(client, sign_in, "bob")
        assert whoami(client).get_json()["sub"] == "bob"


# --- the Host header with a bare-path redirect URI ------------------------------------------------


def test_a_bare_path_redirect_uri_needs_its_hosts_pinned(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigurationError, match="TRUSTED_HOSTS"):
        make_app(redirect_uri="/getAToken")


def test_with_trusted_hosts_another_host_is_refused_and_https_cookies_are_secure(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redirect_uri="/getAToken", flask_config={"TRUSTED_HOSTS": ["app.example"]})
    client = app.test_client()
    assert client.get("/login", headers={"Host": "evil.example"}).status_code == 400
    login = client.get("/login?next=/whoami", base_url="https://app.example")
    assert query_of(login.location)["redirect_uri"] == "https://app.example/getAToken"
    assert "Secure" in login.headers["Set-Cookie"] and "HttpOnly" in login.headers["Set-Cookie"]
    # SESSION_COOKIE_SECURE is not set, yet a session written over https gets a Secure cookie.
    assert not app.config["SESSION_COOKIE_SECURE"]
    note = client.get("/note?text=x", base_url="https://app.example")
    (session_cookie,) = [c for c in note.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "Secure" in session_cookie


# --- provider text in log lines --------------------------------------------------------------------


def test_provider_error_text_is_logged_on_one_line_and_capped(
    app: Flask, idp: LocalProvider, sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    attack = Attack(app, app.test_client(), idp, sign_in)
    forged = "bad\nWARNING identity_flask: Signed in admin\r\n" + "X" * 5000
    with caplog.at_level(logging.INFO, logger="identity_flask"):
        response = attack.error_answer(error="invalid_request\nINFO forged", error_description=forged)
    assert response.status_code == 400
    lines = [r.getMessage() for r in caplog.records if "Provider answered" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0] and "\r" not in lines[0]
    assert len(lines[0]) < 600


def test_the_security_page_lists_every_case_and_no_other() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "security.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|", page, re.M)
    assert rows == list(CASES), "docs/security.md's table and CASES differ"
