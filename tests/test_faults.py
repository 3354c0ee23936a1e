"""Faults around the app: provider down, slow or failing; refresh tokens gone; Redis down;
one user's requests racing to refresh a token.

All against real processes (the local provider, redis-server); the provider's
``/__fault`` helper makes it stall or fail, as a real one can.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests
from conftest import APP_PORT, LiveServer, SignIn, entra_settings
from flask import Flask, jsonify, session
from flask.testing import FlaskClient
from localidp import SHORT_CLIENT_ID, TENANT_ID, LocalProvider, free_port
from redis.backoff import NoBackoff
from redis.retry import Retry
from servers import RedisServer

from identity_flask import Auth

JSON = {"Accept": "application/json"}
TOKEN_PATH = "/oauth2/v2.0/token"
DISCOVERY_PATH = "/.well-known/openid-configuration"


@pytest.fixture
def redis_process() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it stops and starts again."""
    with RedisServer() as server:
        yield server


def redis_app(idp: LocalProvider, port: int) -> Flask:
    app = Flask("redis_app")
    app.config.update(
        SECRET_KEY="test-only-secret",
        SESSION_TYPE="redis",
        # Fail fast when Redis is down (redis-py retries three times with backoff by default).
        SESSION_REDIS=redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)),
    )
    auth = Auth(app, **entra_settings(idp))

    @app.route("/")
    def home() -> str:
        return "home"

    @app.route("/whoami")
    @auth.login_required
    def whoami(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["user"]["sub"])

    return app


def refreshing_user(make_app: Callable[..., Flask], sign_in: SignIn) -> FlaskClient:
    """A browser signed in to an app whose access tokens live 5 seconds: every use refreshes."""
    client = make_app(client_id=SHORT_CLIENT_ID).test_client()
    assert sign_in(client, "/token").status_code == 302
    assert client.get("/token").status_code == 200
    return client


def assert_clean_error(response: Any, status: int) -> str:
    body: str = response.get_data(as_text=True)
    assert response.status_code == status, body[:400]
    assert "Traceback" not in body
    return body


# --- the provider -------------------------------------------------------------------------------


def test_provider_down_at_sign_in_answers_503_and_the_app_keeps_working(make_app: Callable[..., Flask]) -> None:
    nothing_listens = f"https://127.0.0.1:{free_port()}/{TENANT_ID}"
    app = make_app(authority=nothing_listens, timeout=2)
    client = app.test_client()
    start = time.monotonic()
    response = client.get("/login?next=/profile")
    body = assert_clean_error(response, 503)
    assert time.monotonic() - start < 5
    assert "unavailable" in body.lower() and "could not be" in body
    assert response.headers["Retry-After"]
    assert client.get("/profile", headers=JSON).status_code == 401
    assert client.get("/").status_code == 200
    assert client.get("/signed-out").status_code == 200


def test_slow_discovery_is_cut_off_by_the_timeout(make_app: Callable[..., Flask], idp: LocalProvider) -> None:
    idp.fault(DISCOVERY_PATH, delay=5000, times=5)
    app = make_app(timeout=1)
    client = app.test_client()
    idp.log(clear=True)
    start = time.monotonic()
    response = client.get("/login?next=/profile")
    elapsed = time.monotonic() - start
    assert_clean_error(response, 503)
    # one read of at most `timeout` (1 s), never retried; the margin is for a busy machine
    assert sum(entry["path"].endswith(DISCOVERY_PATH) for entry in idp.log()) == 1
    assert elapsed < 4, f"the sign-in waited {elapsed:.1f}s for a provider that stalls 5s, with timeout=1"


def test_slow_token_endpoint_is_cut_off_by_the_timeout(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    app = make_app(timeout=1)
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"))
    idp.fault(TOKEN_PATH, delay=5000, times=5)
    idp.log(clear=True)
    start = time.monotonic()
    response = sign_in.finish(client, callback)
    elapsed = time.monotonic() - start
    assert_clean_error(response, 503)
    assert sum(entry["path"].endswith(TOKEN_PATH) for entry in idp.log()) == 1  # never retried
    assert elapsed < 4, f"the callback waited {elapsed:.1f}s for a token endpoint that stalls 5s"
    idp.clear_faults()
    assert sign_in(client, "/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_slow_provider_does_not_hang_other_requests(make_app: Callable[..., Flask], idp: LocalProvider) -> None:
    app = make_app(timeout=1)
    idp.fault("/.well-known/openid-configuration", delay=3000, times=5)
    with LiveServer(app, APP_PORT) as server:
        results: dict[str, Any] = {}

        def slow() -> None:
            results["login"] = requests.get(f"{server.url}/login", allow_redirects=False, timeout=10)

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.2)  # a real race: the sign-in is waiting on the stalled provider by now
        start = time.monotonic()
        home = requests.get(f"{server.url}/", timeout=10)
        assert home.status_code == 200 and time.monotonic() - start < 0.5
        worker.join(10)
    assert results["login"].status_code == 503


def test_token_endpoint_500_answers_502(make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn) -> None:
    app = make_app()
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"))
    idp.fault(TOKEN_PATH, status=500)
    body = assert_clean_error(sign_in.finish(client, callback), 502)
    assert "server_error" in body
    assert client.get("/").status_code == 200
    # MSAL holds back this client's code redemptions for a few seconds after a 5xx (its
    # Retry-After throttling, 5 s by default), so the retry goes to a fresh process.
    retry = make_app().test_client()
    assert sign_in(retry, "/whoami").status_code == 302
    assert retry.get("/whoami").get_json()["sub"] == "alice"


# A 2xx answer that is not what was asked for, as a captive portal, a proxy's error page or a
# misrouted request gives: MSAL keeps every 2xx discovery answer for 24 hours.
HTML_PAGE = "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>Try later</body></html>"
NOT_DISCOVERY = '{"hello": "world"}'
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.mark.parametrize(
    ("body", "content_type"), [(HTML_PAGE, None), (NOT_DISCOVERY, "application/json")], ids=["html", "json"]
)
def test_a_bad_discovery_answer_is_an_error_page_and_is_not_kept(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, body: str, content_type: str | None
) -> None:
    app = make_app()
    client = app.test_client()
    idp.fault(DISCOVERY_PATH, status=200, body=body, content_type=content_type)
    response = client.get("/login?next=/whoami")
    assert_clean_error(response, 503 if response.status_code == 503 else 502)
    assert response.mimetype == "text/html"
    # The fault is used up: the next sign-in reads the configuration again, and works.
    assert sign_in(client, "/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_a_discovery_document_msal_refuses_is_not_kept(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    real = requests.get(idp.oidc_authority + DISCOVERY_PATH, verify=str(idp.ca_path), timeout=10).json()
    foreign = json.dumps({**real, "issuer": "https://elsewhere.example/tenant/v2.0"})  # a well-formed document
    app = make_app(authority=None, oidc_authority=idp.oidc_authority)
    client = app.test_client()
    idp.fault(DISCOVERY_PATH, status=200, body=foreign, content_type="application/json")
    response = client.get("/login?next=/whoami")
    assert_clean_error(response, 503 if response.status_code == 503 else 502)
    assert sign_in(client, "/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_an_html_answer_to_the_code_redemption_is_a_502_page(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    app = make_app()
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"))
    idp.fault(TOKEN_PATH, status=200, body=HTML_PAGE)
    body = assert_clean_error(sign_in.finish(client, callback), 502)
    assert "server_error" in body
    assert client.get("/whoami", headers=JSON).status_code == 401
    assert sign_in(client, "/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


@pytest.mark.parametrize(
    "answer",
    [
        '{"access_token": "x", "token_type": "Bearer", "expires_in": 3600}',
        '{"access_token": "x", "token_type": "Bearer", "expires_in": 3600, "id_token": 123}',
        '{"access_token": "x", "token_type": "Bearer", "expires_in": 3600, "id_token": "a.W10.b"}',
    ],
    ids=["no-id-token", "id-token-a-number", "id-token-payload-a-list"],
)
def test_a_code_redemption_without_a_usable_id_token_signs_nobody_in(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, answer: str
) -> None:
    app = make_app()
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"))
    idp.fault(TOKEN_PATH, status=200, body=answer, content_type="application/json")
    assert_clean_error(sign_in.finish(client, callback), 502)
    assert client.get("/whoami", headers=JSON).status_code == 401
    assert client.get("/profile").status_code == 302  # still signed out: no empty identity
    assert sign_in(client, "/whoami").status_code == 302
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_a_token_endpoint_error_is_logged_on_one_line(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"))
    forged = json.dumps({"error": "invalid_grant\nCRITICAL forged line " + "A" * 5000})
    idp.fault(TOKEN_PATH, status=400, body=forged, content_type="application/json")
    with caplog.at_level(logging.INFO, logger="identity_flask"):
        assert_clean_error(sign_in.finish(client, callback), 502)  # an error code no one knows
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("identity_flask")]
    assert lines and all("\n" not in line and len(line) < 600 for line in lines)


@pytest.mark.parametrize("accept", ["html", "json"])
def test_an_html_answer_to_a_refresh_is_a_502_and_the_session_survives(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, accept: str
) -> None:
    client = refreshing_user(make_app, sign_in)
    idp.fault(TOKEN_PATH, status=200, body=HTML_PAGE)
    response = client.get("/token", headers=JSON if accept == "json" else {})
    assert_clean_error(response, 502)
    if accept == "json":
        assert response.get_json()["error"] == "server_error"
    else:
        assert response.mimetype == "text/html"
    again = client.get("/token", headers=JSON)
    assert again.status_code == 200 and again.get_json()["sub"] == "alice"


@pytest.mark.parametrize(
    ("body", "content_type"), [(HTML_PAGE, None), ('["a", "list"]', "application/json")], ids=["html", "list"]
)
def test_a_bad_discovery_answer_at_sign_out_still_signs_out_here(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, body: str, content_type: str | None
) -> None:
    app = make_app(authority=None, oidc_authority=idp.oidc_authority)  # sign-out reads the discovery document
    client = app.test_client()
    assert sign_in(client, "/profile").status_code == 302
    idp.fault(DISCOVERY_PATH, status=200, body=body, content_type=content_type)
    response = client.get("/logout", headers=SAME_ORIGIN)
    assert response.status_code == 302, response.get_data(as_text=True)[:400]
    assert not response.location.startswith(idp.origin) and urlsplit(response.location).path == "/"
    assert client.get("/whoami", headers=JSON).status_code == 401
    # Nothing of the bad answer was kept: the next sign-out finds the provider's endpoint.
    assert sign_in(client, "/profile").status_code == 302
    location = client.get("/logout", headers=SAME_ORIGIN).location
    assert location.startswith(idp.entra_authority + "/oauth2/v2.0/logout?")


def test_concurrent_sign_outs_against_a_stalled_provider_do_not_queue(
    make_app: Callable[..., Flask], idp: LocalProvider
) -> None:
    parallel = 6
    app = make_app(authority=None, oidc_authority=idp.oidc_authority, timeout=1)
    idp.fault(DISCOVERY_PATH, delay=1500, times=parallel * 2)
    barrier = threading.Barrier(parallel)
    results: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()
    with LiveServer(app, APP_PORT) as server:

        def sign_out() -> None:
            barrier.wait(5)
            start = time.monotonic()
            response = requests.get(f"{server.url}/logout", headers=SAME_ORIGIN, allow_redirects=False, timeout=15)
            with lock:
                results.append((response.status_code, response.headers.get("Location"), time.monotonic() - start))

        threads = [threading.Thread(target=sign_out) for _ in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert [(status, urlsplit(location or "").path) for status, location, _ in results] == [(302, "/")] * parallel
    times = sorted(elapsed for _, _, elapsed in results)
    # Each waits one timeout (1 s); queued behind one another, the last would wait about 6 s.
    # The margin between is for a busy machine.
    assert times[-1] < 4.5, f"sign-outs waited {', '.join(f'{t:.1f}s' for t in times)}"


@pytest.mark.parametrize("accept", ["html", "json"])
def test_revoked_refresh_token_sends_the_user_to_sign_in_again(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, accept: str
) -> None:
    client = refreshing_user(make_app, sign_in)
    assert idp.revoke_refresh_tokens() >= 1
    if accept == "json":
        response = client.get("/token", headers=JSON)
        assert response.status_code == 401
        assert response.get_json()["error"] == "interaction_required"
        return
    response = client.get("/token")
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    login = urlsplit(response.location)
    assert login.path == "/login" and parse_qs(login.query)["next"] == ["/token"]
    assert client.get("/whoami").get_json()["sub"] == "alice"  # still known; only the token is gone
    auth_uri = sign_in.start(client, response.location)
    back = sign_in.finish(client, idp.sign_in(auth_uri))
    assert back.location == "/token"
    assert client.get("/token").get_json()["sub"] == "alice"


# --- the session store --------------------------------------------------------------------------


def sign_in_to(client: FlaskClient, sign_in: SignIn, login: str) -> None:
    assert sign_in(client, "/login?next=/whoami", login=login).location == "/whoami"


@pytest.mark.redis
def test_redis_down_answers_503(idp: LocalProvider, sign_in: SignIn, redis_process: RedisServer) -> None:
    app = redis_app(idp, redis_process.port)
    client = app.test_client()
    sign_in_to(client, sign_in, "alice")
    redis_process.stop()
    assert_clean_error(client.get("/whoami"), 503)
    assert_clean_error(client.get("/whoami", headers=JSON), 503)


@pytest.mark.redis
def test_redis_down_mixes_no_data_and_recovers(idp: LocalProvider, sign_in: SignIn, redis_process: RedisServer) -> None:
    app = redis_app(idp, redis_process.port)
    alice, bob = app.test_client(), app.test_client()
    sign_in_to(alice, sign_in, "alice")
    sign_in_to(bob, sign_in, "bob")
    redis_process.stop()
    for client in (alice, bob):
        response = client.get("/whoami", headers=JSON)
        assert response.status_code >= 500  # never another user's data, never a signed-in page
        assert b"alice" not in response.data and b"bob" not in response.data
    redis_process.start()  # on the same port, without persistence: every session is gone
    for client in (alice, bob):
        assert client.get("/whoami", headers=JSON).status_code == 401
    sign_in_to(bob, sign_in, "bob")
    sign_in_to(alice, sign_in, "alice")
    assert alice.get("/whoami").get_json()["sub"] == "alice"
    assert bob.get("/whoami").get_json()["sub"] == "bob"


@pytest.mark.redis
def test_an_app_with_its_own_500_handler_keeps_it_and_can_still_answer_store_outages(
    idp: LocalProvider, redis_process: RedisServer
) -> None:
    from identity_flask.session_store import store_outage_page

    app = Flask("own_500_app")
    app.config.update(
        SECRET_KEY="test-only-secret",
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis(port=redis_process.port, socket_timeout=1, retry=Retry(NoBackoff(), 0)),
        IDENTITY_STORE_OUTAGE_PAGE="false",
    )
    Auth(app, **entra_settings(idp))

    @app.errorhandler(500)
    def server_error(error: Any) -> Any:
        answer = store_outage_page(error)
        return answer if answer is not error else ("our own 500 page", 500)

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("a bug in the app")

    @app.route("/page")
    def page() -> str:
        return str(session.get("note", "none"))  # reads the store

    client = app.test_client()
    assert client.get("/boom").get_data(as_text=True) == "our own 500 page"
    redis_process.stop()
    browser = app.test_client(use_cookies=False)  # sends the Cookie header as given
    assert_clean_error(browser.get("/page", headers={"Cookie": "session=some-session-id"}), 503)
