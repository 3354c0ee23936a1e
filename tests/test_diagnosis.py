"""Every sign-in failure names its cause: each cause of ``identity_flask.diagnosis`` produced
for real against the local provider, its code in the log line and the JSON body, its fix on
the page in debug mode only, the login-loop breaker, and no secret in any of it.

:data:`PROVEN` maps every cause of the table to the test that produces it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from cachelib import NullCache
from conftest import APP_ORIGIN, APP_PORT, REDIRECT_URI, LiveServer, SignIn, b2c_settings
from flask import Flask
from flask.testing import FlaskClient
from localidp import LocalProvider, path_and_query, query_of
from werkzeug.test import Client, TestResponse

from identity_flask import diagnosis, pending
from identity_flask.diagnosis import BY_CODE, CAUSES, LOOP_SIGN_INS, troubleshooting_page

JSON = {"Accept": "application/json"}
CALLBACK = "/getAToken"
DOCS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"

#: Each cause of the table, and the test that produces it for real.
PROVEN = {
    "no_state": "test_a_callback_without_state",
    "no_cookie": "test_a_callback_whose_cookies_were_dropped",
    "secure_cookie_http": "test_a_secure_cookie_over_http",
    "host_mismatch": "test_a_callback_on_localhost_after_a_sign_in_started_on_127_0_0_1",
    "key_mismatch": "test_workers_with_different_secret_keys",
    "already_used": "test_a_replayed_callback",
    "expired": "test_an_expired_sign_in",
    "superseded": "test_a_sign_in_dropped_for_newer_ones",
    "unknown_state": "test_a_state_from_another_browser",
    "session_lost": "test_two_instances_with_separate_file_stores",
    "login_loop": "test_a_store_that_drops_every_session_is_stopped_after_a_few_round_trips",
    "redirect_uri_mismatch": "test_provider_errors_at_the_callback_name_their_fix",
    "app_not_found": "test_provider_errors_at_the_callback_name_their_fix",
    "client_secret_invalid": "test_token_endpoint_errors_name_their_fix",
    "client_secret_expired": "test_token_endpoint_errors_name_their_fix",
    "client_rejected": "test_a_wrong_secret_at_a_provider_without_codes",
    "consent_required": "test_provider_errors_at_the_callback_name_their_fix",
    "user_not_in_tenant": "test_provider_errors_at_the_callback_name_their_fix",
    "interaction_required": "test_provider_errors_at_the_callback_name_their_fix",
    "external_account_missing": "test_provider_errors_at_the_callback_name_their_fix",
    "user_cancelled": "test_b2c_errors_name_their_fix",
    "forgot_password": "test_b2c_errors_name_their_fix",
}


# --- helpers ---------------------------------------------------------------------------------


def cause_of(response: TestResponse | requests.Response) -> str | None:
    body = response.get_json() if isinstance(response, TestResponse) else response.json()
    assert isinstance(body, dict)
    cause = body.get("cause")
    return None if cause is None else str(cause)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("identity_flask") and r.levelno >= 30]


def logged_causes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The causes of the failures logged (not the warnings at the start of a sign-in)."""
    lines = [line for line in warnings_of(caplog) if not line.startswith("Sign-in cannot finish")]
    return re.findall(r"\[cause=(\w+),", "\n".join(lines))


def callback_query(idp: LocalProvider, auth_uri: str, login: str = "alice") -> str:
    """Play the user at the provider; the callback's path and query."""
    return path_and_query(idp.sign_in(auth_uri, login=login))


class RoundRobin:
    """A load balancer sending each request to the next of ``apps`` in turn."""

    def __init__(self, *apps: Flask) -> None:
        self.apps = apps
        self.turn = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        app = self.apps[self.turn % len(self.apps)]
        self.turn += 1
        return app(environ, start_response)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="identity_flask"):
        yield caplog


# --- the table and the docs page ---------------------------------------------------------------


def test_every_cause_is_produced_by_a_test() -> None:
    assert set(PROVEN) == set(BY_CODE), "a cause without a test, or a test for no cause"
    names = set(globals())
    assert set(PROVEN.values()) <= names


def test_the_troubleshooting_page_is_rendered_from_the_table() -> None:
    page = troubleshooting_page()
    assert DOCS_PAGE.read_text(encoding="utf-8") == page, (
        "docs/troubleshooting.md differs from identity_flask/diagnosis.py; regenerate it: "
        "python -c \"from identity_flask.diagnosis import troubleshooting_page as p; print(p(), end='')\" "
        "> docs/troubleshooting.md"
    )
    for cause in CAUSES:
        assert f"(cause-{cause.code})=" in page and cause.fix in page
        for code in cause.provider_codes:
            assert code in page


def test_the_table_is_well_formed() -> None:
    codes = [c.code for c in CAUSES]
    assert len(codes) == len(set(codes))
    provider_codes = [code for c in CAUSES for code in c.provider_codes]
    assert len(provider_codes) == len(set(provider_codes))
    for cause in CAUSES:
        assert re.fullmatch(r"[a-z_]+", cause.code)
        assert cause.audience in diagnosis.AUDIENCES and cause.section in diagnosis.SECTIONS
        # One line in the log for each, whatever the evidence.
        line = diagnosis.Diagnosis(cause, "E" * diagnosis.MAX_EVIDENCE * 2).log_line()
        assert "\n" not in line and len(line) < 620


# --- the callback found no sign-in: each cause for real ----------------------------------------


def test_a_callback_without_state(app: Flask, logs: pytest.LogCaptureFixture) -> None:
    response = app.test_client().get(f"{CALLBACK}?code=abc", headers=JSON)
    assert response.status_code == 400 and cause_of(response) == "no_state"
    assert logged_causes(logs) == ["no_state"]


def test_a_callback_whose_cookies_were_dropped(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """The browser went to the provider with its cookies and came back without any."""
    with LiveServer(make_app(), APP_PORT) as server:
        browser = requests.Session()
        callback = idp.sign_in(idp.auth_uri_from(browser, f"{server.url}/profile"))
        assert any(name.startswith(pending.COOKIE_PREFIX) for name in browser.cookies.keys())
        browser.cookies.clear()  # what a browser blocking the site's cookies does
        answer = browser.get(callback, headers=JSON, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_state"
    assert cause_of(answer) == "no_cookie"
    (line,) = [line for line in warnings_of(logs) if "cause=no_cookie" in line]
    assert f"The callback came to {APP_ORIGIN}" in line and "SameSite=Lax" in line


def test_a_secure_cookie_over_http(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """``SESSION_COOKIE_SECURE`` over plain http: a real cookie jar never sends the cookies back."""
    app = make_app(flask_config={"SESSION_COOKIE_SECURE": True})
    with LiveServer(app, APP_PORT) as server:
        browser = requests.Session()
        callback = idp.sign_in(idp.auth_uri_from(browser, f"{server.url}/profile"))
        (cookie,) = [c for c in browser.cookies if c.name.startswith(pending.COOKIE_PREFIX)]
        assert cookie.secure
        answer = browser.get(callback, headers=JSON, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and cause_of(answer) == "secure_cookie_http"
    (line,) = [line for line in warnings_of(logs) if "cause=secure_cookie_http" in line]
    assert f"The callback came to {APP_ORIGIN}; SESSION_COOKIE_SECURE is on." in line


def test_a_callback_on_localhost_after_a_sign_in_started_on_127_0_0_1(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    with LiveServer(make_app(), APP_PORT) as server:
        browser = requests.Session()
        callback = idp.sign_in(idp.auth_uri_from(browser, f"{server.url}/profile"))
        on_localhost = callback.replace(APP_ORIGIN, f"http://localhost:{APP_PORT}")
        answer = browser.get(on_localhost, headers=JSON, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and cause_of(answer) == "host_mismatch"
    (line,) = [line for line in warnings_of(logs) if "cause=host_mismatch" in line]
    assert f"The callback came to http://localhost:{APP_PORT}; the redirect URI is {REDIRECT_URI}." in line


def test_a_sign_in_started_on_localhost_warns_at_once_that_it_cannot_finish(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """The everyday mistake: the app opened at localhost, its redirect URI on 127.0.0.1. The
    login logs why the sign-in cannot finish; the callback, which gets no cookie, says so too."""
    with LiveServer(make_app(), APP_PORT) as server:
        browser = requests.Session()
        callback = idp.sign_in(idp.auth_uri_from(browser, f"http://localhost:{APP_PORT}/profile"))
        assert callback.startswith(REDIRECT_URI)
        answer = browser.get(callback, headers=JSON, allow_redirects=False, timeout=10)
        assert server.url == APP_ORIGIN
    assert answer.status_code == 400 and cause_of(answer) == "no_cookie"
    started = [line for line in warnings_of(logs) if line.startswith("Sign-in cannot finish")]
    assert len(started) == 1 and "cause=host_mismatch" in started[0]
    assert f"started on http://localhost:{APP_PORT}, but the redirect URI is {REDIRECT_URI}" in started[0]


def test_a_sign_in_on_the_redirect_uris_host_gives_no_such_warning(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    with LiveServer(make_app(), APP_PORT) as server:
        finished = idp.sign_in_to_app(requests.Session(), f"{server.url}/profile")
    assert finished.status_code == 302 and finished.headers["Location"] == "/profile"
    assert not [line for line in warnings_of(logs) if line.startswith("Sign-in cannot finish")]


def test_a_cookie_domain_covering_the_redirect_uri_gives_no_such_warning(
    make_app: Callable[..., Flask], logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(
        redirect_uri="https://login.app.example/getAToken",
        flask_config={"SESSION_COOKIE_DOMAIN": "app.example", "SESSION_COOKIE_SECURE": True},
    )
    response = app.test_client().get("/login", base_url="https://www.app.example")
    assert response.status_code == 302
    assert not [line for line in warnings_of(logs) if line.startswith("Sign-in cannot finish")]


def test_workers_with_different_secret_keys(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """Two workers behind one address, each with a key generated at start-up."""
    first = make_app(flask_config={"SECRET_KEY": "worker-one-key"})
    second = make_app(flask_config={"SECRET_KEY": "worker-two-key"})
    browser = Client(RoundRobin(first, second))
    auth_uri = idp.auth_uri_from(browser, "/profile")  # /profile on the first, /login on the second
    answer = browser.get(callback_query(idp, auth_uri), headers=JSON)  # the callback on the first
    assert answer.status_code == 400 and cause_of(answer) == "key_mismatch"
    assert "key_mismatch" in logged_causes(logs)


def test_a_replayed_callback(app: Flask, idp: LocalProvider, sign_in: SignIn, logs: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    callback = callback_query(idp, sign_in.start(client, "/profile"))
    assert client.get(callback).status_code == 302
    replayed = client.get(callback, headers=JSON)
    assert replayed.status_code == 400 and replayed.get_json()["error"] == "invalid_state"
    assert cause_of(replayed) == "already_used"
    assert client.get("/whoami").get_json()["sub"] == "alice"  # still signed in


def test_an_expired_sign_in(
    app: Flask, idp: LocalProvider, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    later = [0.0]
    monkeypatch.setattr(pending, "clock", lambda: time.time() + later[0])
    client = app.test_client()
    # The browser still sends the cookie (a clock ahead of the browser's).
    callback = callback_query(idp, sign_in.start(client, "/profile"))
    later[0] = 601
    kept = client.get(callback, headers=JSON)
    assert kept.status_code == 400 and kept.get_json()["error"] == "expired" and cause_of(kept) == "expired"
    # The browser dropped the cookie when its Max-Age passed: the record still tells.
    later[0] = 0
    callback = callback_query(idp, sign_in.start(client, "/profile"))
    client.delete_cookie(pending.cookie_name(query_of(callback)["state"]))
    later[0] = 601
    dropped = client.get(callback, headers=JSON)
    assert dropped.status_code == 400 and dropped.get_json()["error"] == "expired" and cause_of(dropped) == "expired"
    assert "IDENTITY_SIGN_IN_TIMEOUT is 600 s" in " ".join(warnings_of(logs))


def test_a_sign_in_dropped_for_newer_ones(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    monkeypatch.setattr(pending, "clock", lambda: now[0])
    client = make_app(max_pending_sign_ins=2).test_client()
    oldest = sign_in.start(client, "/profile")
    for _ in range(2):
        now[0] += 1
        sign_in.start(client, "/profile")
    answer = client.get(callback_query(idp, oldest), headers=JSON)
    assert answer.status_code == 400 and cause_of(answer) == "superseded"


def test_a_state_from_another_browser(app: Flask, idp: LocalProvider, sign_in: SignIn) -> None:
    victim, attacker = app.test_client(), app.test_client()
    sign_in.start(victim, "/profile")  # the victim's own sign-in is pending
    forged = callback_query(idp, sign_in.start(attacker, "/profile"), login="mallory")
    answer = victim.get(forged, headers=JSON)
    assert answer.status_code == 400 and cause_of(answer) == "unknown_state"
    assert victim.get("/whoami", headers=JSON).status_code == 401


# --- login loops ----------------------------------------------------------------------------------


def round_trip(browser: FlaskClient | Client, idp: LocalProvider, **headers: str) -> TestResponse:
    """A protected page, the provider, the callback: the browser's answer to its callback."""
    callback = callback_query(idp, idp.auth_uri_from(browser, "/profile"))
    answer: TestResponse = browser.get(callback, headers=headers)
    return answer


def test_two_instances_with_separate_file_stores(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """App Service scaled out to two instances, each with its own file store, no affinity."""
    first, second = make_app(), make_app()
    assert first.config["SESSION_CACHELIB"]._path != second.config["SESSION_CACHELIB"]._path
    balancer = RoundRobin(first, second)
    browser = Client(balancer)
    assert round_trip(browser, idp).status_code == 302  # signed in on the first instance
    balancer.turn = 1
    assert browser.get("/whoami", headers=JSON).status_code == 401  # unknown on the second
    balancer.turn = 1  # the next page goes to the second instance too
    logs.clear()
    assert round_trip(browser, idp).status_code == 302  # the second signs in again...
    assert logged_causes(logs) == ["session_lost"]  # ...and says the session was lost
    (line,) = [line for line in warnings_of(logs) if "cause=session_lost" in line]
    assert "This browser finished a sign-in" in line and "SESSION_TYPE = 'redis'" in line
    stopped = round_trip(browser, idp, **JSON)  # the third round trip is stopped
    assert stopped.status_code == 400 and stopped.get_json()["error"] == "login_loop"
    assert cause_of(stopped) == "login_loop"


def test_a_store_that_drops_every_session_is_stopped_after_a_few_round_trips(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    app = make_app(flask_config={"SESSION_CACHELIB": NullCache()})
    client = app.test_client()
    answers = [round_trip(client, idp) for _ in range(LOOP_SIGN_INS)]
    assert [a.status_code for a in answers] == [302] * (LOOP_SIGN_INS - 1) + [400]
    page = answers[-1].get_data(as_text=True)
    assert "Sign-in keeps starting over" in page
    assert "login_loop" in logged_causes(logs)
    # Production: a generic page; the log has the diagnosis and the fix.
    assert "How to fix it" not in page and "SESSION_TYPE" not in page
    (line,) = [line for line in warnings_of(logs) if "cause=login_loop" in line]
    assert "SESSION_TYPE = 'redis'" in line and "sign-ins finished in this browser" in line
    # Trying again at once is stopped again, before the provider is asked to redeem anything.
    idp.log(clear=True)
    assert round_trip(client, idp).status_code == 400
    assert not [e for e in idp.log() if e["method"] == "POST" and e["path"].endswith("/token")]


def test_the_loop_page_shows_the_diagnosis_in_debug_mode(make_app: Callable[..., Flask], idp: LocalProvider) -> None:
    app = make_app(flask_config={"SESSION_CACHELIB": NullCache()})
    app.debug = True
    client = app.test_client()
    for _ in range(LOOP_SIGN_INS - 1):
        assert round_trip(client, idp).status_code == 302
    page = round_trip(client, idp).get_data(as_text=True)
    assert "How to fix it" in page and "login_loop" in page and "SESSION_TYPE = &#39;redis&#39;" in page
    body = round_trip(client, idp, **JSON).get_json()
    assert body["cause"] == "login_loop" and "SESSION_TYPE" in body["fix"] and "sign-ins finished" in body["diagnosis"]


def test_a_user_signing_in_again_and_again_is_never_stopped(
    app: Flask, idp: LocalProvider, sign_in: SignIn, logs: pytest.LogCaptureFixture
) -> None:
    """Signed in, signing in again (twice in a row, and more); then out and in, quickly."""
    client = app.test_client()
    for login in ("alice", "alice", "bob", "alice", "alice"):
        answer = sign_in(client, "/login?next=/whoami", login=login)
        assert answer.status_code == 302 and answer.location == "/whoami"
        assert client.get("/whoami").get_json()["sub"] == login
    for _ in range(LOOP_SIGN_INS + 1):
        assert client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
        assert sign_in(client, "/login?next=/whoami").status_code == 302
    assert not [c for c in logged_causes(logs) if c in ("session_lost", "login_loop")]


def test_tabs_finishing_at_the_same_moment_are_not_a_loop(
    make_app: Callable[..., Flask], idp: LocalProvider, logs: pytest.LogCaptureFixture
) -> None:
    """Several tabs of one browser come back at once: each response rewrites the record (the
    last one wins), and none of them is taken for a loop."""
    tabs = LOOP_SIGN_INS + 2
    with LiveServer(make_app(), APP_PORT) as server:
        browser = requests.Session()
        callbacks = [idp.sign_in(idp.auth_uri_from(browser, f"{server.url}/whoami?tab={n}")) for n in range(tabs)]
        barrier = threading.Barrier(tabs)

        def come_back(url: str) -> int:
            barrier.wait(10)
            return requests.get(url, cookies=browser.cookies, allow_redirects=False, timeout=30).status_code

        with ThreadPoolExecutor(tabs) as pool:
            statuses = list(pool.map(come_back, callbacks))
        assert statuses == [302] * tabs
        again = idp.sign_in_to_app(browser, f"{server.url}/whoami")  # and the browser still signs in
        assert again.status_code == 302
    assert not [c for c in logged_causes(logs) if c in ("session_lost", "login_loop")]


# --- the provider's errors ------------------------------------------------------------------------

#: Entra's answers at the callback: the provider code, the ``error`` it comes with, the status.
AUTHORIZE_ERRORS = [
    ("AADSTS50011", "invalid_request", 400, "redirect_uri_mismatch"),
    ("AADSTS700016", "unauthorized_client", 400, "app_not_found"),
    ("AADSTS65001", "consent_required", 400, "consent_required"),
    ("AADSTS50020", "access_denied", 403, "user_not_in_tenant"),
    ("AADSTS50076", "interaction_required", 400, "interaction_required"),
    ("AADSTS50079", "interaction_required", 400, "interaction_required"),
    ("AADSTS90072", "invalid_request", 400, "external_account_missing"),
    ("AADSTS99999", "invalid_request", 400, None),  # a code the table does not know: as before
]


@pytest.mark.parametrize(("code", "error", "status", "cause"), AUTHORIZE_ERRORS, ids=[e[0] for e in AUTHORIZE_ERRORS])
def test_provider_errors_at_the_callback_name_their_fix(
    app: Flask,
    idp: LocalProvider,
    sign_in: SignIn,
    logs: pytest.LogCaptureFixture,
    code: str,
    error: str,
    status: int,
    cause: str | None,
) -> None:
    description = f"{code}: the provider's own words. Trace ID: 0000 Correlation ID: 1111"
    client = app.test_client()
    auth_uri = sign_in.start(client, "/profile")
    idp.authorize_error(error, description)
    callback = idp.sign_in(auth_uri)
    assert query_of(callback)["error"] == error and query_of(callback)["state"] == query_of(auth_uri)["state"]
    answer = client.get(path_and_query(callback), headers=JSON)
    assert answer.status_code == status and answer.get_json()["error"] == error
    assert answer.get_json()["error_description"] == description  # the provider's words, as before
    assert cause_of(answer) == cause
    (line,) = [line for line in warnings_of(logs) if "Provider answered" in line]
    if cause is None:
        assert "cause=" not in line
        return
    assert f"[cause={cause}," in line
    if code == "AADSTS50011":
        assert f"The redirect_uri sent was {REDIRECT_URI}." in line
        assert "App registrations > your app > Authentication > Web > Redirect URIs" in line


def test_the_redirect_uri_sent_and_where_to_register_it_are_on_the_debug_page(
    app: Flask, idp: LocalProvider, sign_in: SignIn
) -> None:
    app.debug = True
    client = app.test_client()
    auth_uri = sign_in.start(client, "/profile")
    idp.authorize_error("invalid_request", "AADSTS50011: The redirect URI specified in the request does not match.")
    page = client.get(path_and_query(idp.sign_in(auth_uri))).get_data(as_text=True)
    assert f"The redirect_uri sent was {REDIRECT_URI}." in page
    assert "App registrations &gt; your app &gt; Authentication &gt; Web &gt; Redirect URIs" in page


#: Entra's answers at the token endpoint: the provider code, ``error``, its HTTP status, ours.
TOKEN_ERRORS = [
    ("AADSTS7000215", "invalid_client", 401, 502, "client_secret_invalid"),
    ("AADSTS7000222", "invalid_client", 401, 502, "client_secret_expired"),
    ("AADSTS700016", "unauthorized_client", 400, 400, "app_not_found"),
    ("AADSTS65001", "invalid_grant", 400, 400, "consent_required"),
    ("AADSTS99999", "invalid_client", 401, 502, None),
]


@pytest.mark.parametrize(
    ("code", "error", "provider_status", "status", "cause"), TOKEN_ERRORS, ids=[e[0] for e in TOKEN_ERRORS]
)
def test_token_endpoint_errors_name_their_fix(
    app: Flask,
    idp: LocalProvider,
    sign_in: SignIn,
    logs: pytest.LogCaptureFixture,
    code: str,
    error: str,
    provider_status: int,
    status: int,
    cause: str | None,
) -> None:
    client = app.test_client()
    callback = callback_query(idp, sign_in.start(client, "/profile"))
    idp.token_error(error, f"{code}: the provider's own words.", status=provider_status)
    answer = client.get(callback, headers=JSON)
    assert answer.status_code == status and answer.get_json()["error"] == error
    assert cause_of(answer) == cause
    (line,) = [line for line in warnings_of(logs) if "Token endpoint refused" in line]
    assert "the provider's own words" not in line  # its description is not logged
    assert (f"[cause={cause}," in line) if cause else "cause=" not in line


def test_a_wrong_secret_at_a_provider_without_codes(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, logs: pytest.LogCaptureFixture
) -> None:
    """A real wrong client secret: the local provider answers invalid_client with no AADSTS code,
    as OpenID Connect providers other than Entra ID do. The cause is named; the secret is not."""
    wrong = "WRONG-secret-7c1f0e"
    app = make_app(client_credential=wrong, authority=None, oidc_authority=idp.oidc_authority)
    client = app.test_client()
    answer = client.get(callback_query(idp, sign_in.start(client, "/profile")), headers=JSON)
    assert answer.status_code == 502 and answer.get_json()["error"] == "invalid_client"
    assert cause_of(answer) == "client_rejected"
    (line,) = [line for line in warnings_of(logs) if "Token endpoint refused" in line]
    assert "[cause=client_rejected," in line and "IDENTITY_CLIENT_ID" in line
    assert wrong not in logs.text and wrong not in answer.get_data(as_text=True)


def test_b2c_errors_name_their_fix(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, logs: pytest.LogCaptureFixture
) -> None:
    # The user cancels a B2C user flow.
    app = make_app(**b2c_settings(idp), authority=None)
    client = app.test_client()
    auth_uri = sign_in.start(client, "/profile")
    idp.authorize_error("access_denied", "AADB2C90091: The user has cancelled entering self-asserted information.")
    cancelled = client.get(path_and_query(idp.sign_in(auth_uri)), headers=JSON)
    assert cancelled.status_code == 403 and cause_of(cancelled) == "user_cancelled"
    # "Forgot your password?" (the provider's own link) where no reset flow is configured.
    app = make_app(**b2c_settings(idp, b2c_reset_password_user_flow=None), authority=None)
    client = app.test_client()
    forgot = client.get(path_and_query(idp.sign_in(sign_in.start(client, "/profile"), action="forgot")), headers=JSON)
    assert forgot.status_code == 403 and cause_of(forgot) == "forgot_password"
    assert "IDENTITY_B2C_RESET_PASSWORD_USER_FLOW" in " ".join(warnings_of(logs))


# --- pages: debug and production --------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_the_page_shows_the_diagnosis_only_in_debug_mode(
    app: Flask, idp: LocalProvider, sign_in: SignIn, debug: bool
) -> None:
    app.debug = debug
    client = app.test_client()
    callback = callback_query(idp, sign_in.start(client, "/profile"))
    assert client.get(callback).status_code == 302
    page = client.get(callback)
    body = client.get(callback, headers=JSON).get_json()
    text = page.get_data(as_text=True)
    assert page.status_code == 400 and "does not match a sign-in started in this browser" in text
    assert body["cause"] == "already_used"
    if debug:
        assert "How to fix it" in text and "already_used" in text and "replayed" in text
        assert "replayed" in body["diagnosis"] and body["fix"]
    else:
        assert "How to fix it" not in text and "already_used" not in text and "replayed" not in text
        assert set(body) == {"error", "error_description", "cause"}


def test_an_app_template_without_the_diagnosis_still_renders(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app()
    app.debug = True
    (tmp_path / "templates" / "identity").mkdir(parents=True)
    (tmp_path / "templates" / "identity" / "auth_error.html").write_text("<h1>{{ title }}</h1>{{ error }}")
    app.template_folder = str(tmp_path / "templates")
    page = app.test_client().get(f"{CALLBACK}?code=abc")
    assert page.status_code == 400 and page.get_data(as_text=True) == "<h1>Sign-in failed</h1>invalid_request"


# --- hostile input ------------------------------------------------------------------------------------


def test_a_forged_or_foreign_record_cookie_is_ignored(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    client.set_cookie(pending.RECORD_COOKIE, "A" * 3000)
    assert sign_in(client, "/login?next=/whoami").status_code == 302
    # A record sealed under another app's key: ignored too, and the loop is not tripped by it.
    other = Flask("other")
    other.config["SECRET_KEY"] = "another-key"
    with other.test_request_context():
        forged = pending.PendingSignIns(ttl=600, keep=8)._seal_record({"s": {}, "f": [[int(time.time()), True]] * 8})
    client.set_cookie(pending.RECORD_COOKIE, forged)
    assert sign_in(client, "/login?next=/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_the_record_stays_small(app: Flask) -> None:
    client = app.test_client()
    for n in range(60):
        response = client.get("/login?" + urlencode({"next": f"/page/{n}"}), headers={"Host": f"host{n}.example"})
        assert response.status_code == 302
    cookie = client.get_cookie(pending.RECORD_COOKIE, domain="host59.example")
    assert cookie is not None and len(cookie.value) < pending.MAX_COOKIE_BYTES
    # Every Host was another cookie domain: one browser's record on one host, over and over.
    for n in range(60):
        assert client.get("/login?" + urlencode({"next": "/p" * 300 + str(n)})).status_code == 302
    cookie = client.get_cookie(pending.RECORD_COOKIE)
    assert cookie is not None and len(cookie.value) < 2000


def test_a_hostile_host_header_at_login_is_one_capped_log_line(app: Flask, logs: pytest.LogCaptureFixture) -> None:
    host = "evil." + ".".join(["x" * 60] * 3) + ".example"
    response = app.test_client().get("/login", headers={"Host": host})
    assert response.status_code == 302
    (line,) = [line for line in warnings_of(logs) if line.startswith("Sign-in cannot finish")]
    assert "\n" not in line and len(line) < 700 and host not in line  # capped


# --- nothing secret in any log line or page -----------------------------------------------------------


def test_no_state_code_session_id_or_token_in_any_diagnosis(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, logs: pytest.LogCaptureFixture
) -> None:
    secrets: dict[str, str] = {}
    shown: list[str] = []
    for debug in (False, True):
        # A replayed callback, and a loop, in debug mode and out of it.
        app = make_app()
        app.debug = debug
        client = app.test_client()
        callback = callback_query(idp, sign_in.start(client, "/profile"))
        secrets[f"state {debug}"] = query_of(callback)["state"]
        secrets[f"code {debug}"] = query_of(callback)["code"]
        assert client.get(callback).status_code == 302
        session_cookie = client.get_cookie("session")
        assert session_cookie is not None
        secrets[f"session id {debug}"] = session_cookie.value
        for headers in ({}, JSON):
            shown.append(client.get(callback, headers=headers).get_data(as_text=True))
        looping = make_app(flask_config={"SESSION_CACHELIB": NullCache()})
        looping.debug = debug
        loop_client = looping.test_client()
        for n in range(LOOP_SIGN_INS):
            callback = callback_query(idp, idp.auth_uri_from(loop_client, "/profile"))
            secrets[f"loop state {debug} {n}"] = query_of(callback)["state"]
            secrets[f"loop code {debug} {n}"] = query_of(callback)["code"]
            answer = loop_client.get(callback)
            shown.append(answer.get_data(as_text=True))
            cookie = loop_client.get_cookie("session")
            if cookie is not None:
                secrets[f"loop session id {debug} {n}"] = cookie.value
        assert answer.status_code == 400
        for name in (pending.RECORD_COOKIE,):
            record = loop_client.get_cookie(name)
            assert record is not None
            secrets[f"record {debug}"] = record.value
    texts = [*shown, *(f"{r.getMessage()} {r.args!r}" for r in logs.records)]
    assert "login_loop" in "".join(shown) and any("already_used" in t for t in texts)
    leaks = [f"{what} in {text[:200]}" for text in texts for what, value in secrets.items() if value in text]
    assert not leaks, "\n".join(leaks)
