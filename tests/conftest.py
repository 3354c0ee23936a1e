"""Fixtures: the local OpenID Connect provider, apps configured against it, sign-in helpers,
Redis and chromium (for the tests marked ``redis`` and ``browser``)."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

# The local provider (tests/idp), the server starters and the test app (tests/).
sys.path.insert(0, str(Path(__file__).parent / "idp"))
sys.path.insert(0, str(Path(__file__).parent))

from localidp import (  # noqa: E402
    B2C_EDIT_PROFILE,
    B2C_RESET_PASSWORD,
    B2C_SIGN_IN,
    B2C_TENANT,
    CLIENT_ID,
    CLIENT_SECRET,
    LocalProvider,
    free_port,
    group_id,
)
from servers import RedisServer  # noqa: E402
from testapp import create_app  # noqa: E402

APP_PORT = free_port()
APP_ORIGIN = f"http://127.0.0.1:{APP_PORT}"
REDIRECT_URI = f"{APP_ORIGIN}/getAToken"


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    """The local provider, shared by the whole run."""
    origins = [APP_ORIGIN, "http://localhost"]
    local = LocalProvider(
        tmp_path_factory.mktemp("idp"),
        redirect_uris=[f"{o}{p}" for o in origins for p in ("/getAToken", "/auth/redirect")],
        post_logout_redirect_uris=[f"{o}{p}" for o in origins for p in ("/", "/signed-out")],
        users={
            "admin": {"roles": ["Admin"], "name": "Ada Admin"},
            "stringroles": {"roles": "Admin"},
            "groupadmin": {"roles": ["Admin"], "groups": [group_id(1)]},
        },
    )
    local.start()
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = str(local.ca_bundle)
    yield local
    local.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def idp(provider: LocalProvider) -> Iterator[LocalProvider]:
    """The provider with a clean request log and no faults left by other tests."""
    provider.clear_faults()
    provider.log(clear=True)
    yield provider
    provider.clear_faults()


def entra_settings(provider: LocalProvider, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_credential": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "authority": provider.entra_authority,
        **extra,
    }


def b2c_settings(provider: LocalProvider, **extra: Any) -> dict[str, Any]:
    return {
        "client_id": CLIENT_ID,
        "client_credential": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "b2c_tenant_name": B2C_TENANT,
        "b2c_signup_signin_user_flow": B2C_SIGN_IN,
        "b2c_edit_profile_user_flow": B2C_EDIT_PROFILE,
        "b2c_reset_password_user_flow": B2C_RESET_PASSWORD,
        "b2c_authority_host": provider.origin,
        **extra,
    }


@pytest.fixture
def make_app(idp: LocalProvider, tmp_path: Path) -> Callable[..., Flask]:
    """Build a test app; keyword arguments are ``IDENTITY_*`` settings over the Entra-shaped ones."""
    count = 0

    def build(flask_config: dict[str, Any] | None = None, **settings: Any) -> Flask:
        nonlocal count
        count += 1
        merged = {k: v for k, v in entra_settings(idp, **settings).items() if v is not None}
        return create_app(str(tmp_path / f"sessions{count}"), flask_config=flask_config, **merged)

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


class SignIn:
    """Sign a test client in through the provider, the way a browser would.

    The same walk as for a browser on a live app (:meth:`LocalProvider.sign_in_to_app`),
    here with Flask's test client as the browser.
    """

    def __init__(self, provider: LocalProvider) -> None:
        self.provider = provider

    def start(self, client: FlaskClient, path: str = "/profile", **headers: str) -> str:
        """Follow the app's redirects from ``path`` to the provider; return the provider URL."""
        return self.provider.auth_uri_from(client, path, headers=headers)

    def finish(self, client: FlaskClient, callback_url: str) -> TestResponse:
        """Come back to the app with the provider's answer; the app's answer to its callback."""
        response: TestResponse = self.provider.back_to_app(client, callback_url)
        return response

    def __call__(self, client: FlaskClient, path: str = "/profile", login: str = "alice", **kw: Any) -> TestResponse:
        """All of it: ``path``, the provider's pages as ``login``, the callback (see :meth:`LocalProvider.sign_in`)."""
        response: TestResponse = self.provider.sign_in_to_app(client, path, login=login, **kw)
        return response


@pytest.fixture
def sign_in(idp: LocalProvider) -> SignIn:
    return SignIn(idp)


def unique(prefix: str) -> str:
    """A login of its own: the provider keeps consent and step-ups per login."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def signed_in(app: Flask, sign_in: SignIn, login: str) -> FlaskClient:
    """A test client of ``app`` signed in as ``login`` through the provider."""
    client = app.test_client()
    assert sign_in(client, "/profile", login=login).status_code == 302
    return client


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else None


def stored_session(app: Flask, sid: str) -> dict[str, Any] | None:
    """Session ``sid`` as the app's store holds it, read with the store's own client:
    Redis decoded with msgpack, or cachelib's store (which decodes it itself)."""
    key = app.session_interface.key_prefix + sid  # type: ignore[attr-defined]
    if app.config.get("SESSION_TYPE") == "redis":
        raw = app.config["SESSION_REDIS"].get(key)
        return None if raw is None else dict(msgspec.msgpack.decode(raw))
    data = app.config["SESSION_CACHELIB"].get(key)
    return None if data is None else dict(data)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` for a module's tests, which are marked ``redis``."""
    with RedisServer() as server:
        yield server


def burst(url: str, cookie: str, parallel: int) -> list[requests.Response]:
    """``parallel`` GETs of ``url`` by one browser (session ``cookie``), let go at the same
    moment, as an API caller (JSON answers); their answers, in the order they came."""
    barrier = threading.Barrier(parallel)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait(10)
        answer = requests.get(url, cookies={"session": cookie}, headers={"Accept": "application/json"}, timeout=30)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=call) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


class LiveServer:
    """A Flask app served by werkzeug in a background thread, on a real port."""

    def __init__(self, app: Flask, port: int) -> None:
        import threading

        from werkzeug.serving import make_server

        self.url = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def live_app(make_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    """The test app on APP_PORT, the port the provider knows as its redirect URI."""
    with LiveServer(make_app(), APP_PORT) as server:
        yield server


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (never a downloaded browser).

    Module-scoped: Playwright's sync API runs an event loop in the main thread
    while it lives, which async views (run through asgiref) must not meet.
    """
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (apt-get install chromium).")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) that trusts the local provider's certificate."""
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def sign_in_on_provider_page(page: Any, provider: LocalProvider, back_to: str, login: str = "grace") -> None:
    """In the browser, on the provider's login page: sign in as ``login`` and wait to be back at ``back_to``."""
    page.wait_for_url(provider.origin + "/**")
    assert page.title() == "Sign-in"
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_url(back_to)


#: Fixtures that start what a marker names: a test using one must carry that marker,
#: so that ``-m "not browser and not redis"`` (``make test-fast``) leaves it out.
MARKED_FIXTURES = {"browser": "browser", "redis_server": "redis", "redis_process": "redis"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that starts chromium or Redis without saying so in its markers."""
    unmarked = [
        f"{item.nodeid} uses {fixture} but is not marked {marker}"
        for item in items
        for fixture, marker in MARKED_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))
