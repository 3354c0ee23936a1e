"""The session store cannot be talked past: sign-out sticks, anonymous traffic costs it
nothing, and nothing read from it is ever unpickled.

Each test runs against the default kind of store the tests use (cachelib's file
store) and a real ``redis-server``, with the real local provider signing users in.
"""

from __future__ import annotations

import base64
import logging
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import APP_PORT, LiveServer, SignIn, stored_session
from flask import Flask
from flask.testing import FlaskClient
from localidp import SHORT_CLIENT_ID, LocalProvider
from servers import RedisServer

from identity_flask import safe_store

JSON = {"Accept": "application/json"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


class Store:
    """One kind of store under test: how to build an app on it and look inside it."""

    def __init__(self, kind: str, make_app: Callable[..., Flask], tmp_path: Path, redis_server: RedisServer) -> None:
        self.kind = kind
        self.directory = tmp_path / "store"
        if kind == "redis":
            self.client = redis.Redis(port=redis_server.port)
            self.client.flushall()
            self.app = make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": self.client})
        else:
            self.app = make_app(flask_config={"SESSION_CACHELIB": safe_store.SessionFileCache(str(self.directory))})

    def keys(self) -> list[str]:
        if self.kind == "redis":
            return [k.decode() for k in self.client.keys("*")]
        return [p.name for p in self.directory.iterdir() if not p.name.endswith(".__wz_cache")]

    def has(self, sid: str) -> bool:
        return stored_session(self.app, sid) is not None

    def plant(self, sid: str, payload: bytes) -> None:
        """Write raw bytes as the record of session ``sid``, as someone with access to the store could."""
        key = self.app.session_interface.key_prefix + sid  # type: ignore[attr-defined]
        if self.kind == "redis":
            self.client.set(key, payload)
            return
        # The store writes the record's file (a 4-byte expiry, then the value); the bytes after
        # the expiry are then swapped for the payload, as a writable session folder allows.
        cache = self.app.config["SESSION_CACHELIB"]
        before = set(self.directory.iterdir())
        cache.set(key, "placeholder")
        (written,) = set(self.directory.iterdir()) - before
        written.write_bytes(written.read_bytes()[:4] + payload)


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, make_app: Callable[..., Flask], tmp_path: Path) -> Store:
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Store(request.param, make_app, tmp_path, redis_server)  # type: ignore[arg-type]


def sign_in_browser(server: LiveServer, idp: LocalProvider, login: str = "alice") -> requests.Session:
    browser = requests.Session()
    back = idp.sign_in_to_app(browser, f"{server.url}/whoami", login=login)
    assert back.status_code == 302, back.text[:300]
    assert browser.get(f"{server.url}/whoami", timeout=10).json()["sub"] == login
    return browser


def slow_write(server: LiveServer, sid: str, results: dict[str, requests.Response]) -> threading.Thread:
    """Start a request that loads session ``sid`` now and writes to it 1.5 s later."""

    def run() -> None:
        url = f"{server.url}/slow-note?seconds=1.5&text=late"
        results["slow"] = requests.get(url, cookies={"session": sid}, timeout=20)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.4)  # a real race: let it load the session before the other request begins
    return thread


# --- 2. sign-out sticks --------------------------------------------------------------------------


def test_a_slow_request_started_before_sign_out_does_not_sign_the_old_cookie_in_again(
    store: Store, idp: LocalProvider
) -> None:
    with LiveServer(store.app, APP_PORT) as server:
        browser = sign_in_browser(server, idp)
        old_sid = str(browser.cookies.get("session"))
        results: dict[str, requests.Response] = {}
        thread = slow_write(server, old_sid, results)
        out = browser.get(f"{server.url}/logout", headers=SAME_ORIGIN, allow_redirects=False, timeout=10)
        assert out.status_code == 302 and browser.cookies.get("session") is None
        thread.join(20)

        assert results["slow"].status_code == 200
        assert "session=" not in results["slow"].headers.get("Set-Cookie", ""), "the stale answer re-issued the cookie"
        assert not store.has(old_sid), "the slow request wrote the signed-out session back"
        again = requests.get(f"{server.url}/whoami", cookies={"session": old_sid}, headers=JSON, timeout=10)
        assert again.status_code == 401


def test_a_slow_request_started_before_sign_in_does_not_undo_the_new_session_id(
    store: Store, idp: LocalProvider
) -> None:
    with LiveServer(store.app, APP_PORT) as server:
        browser = requests.Session()
        browser.get(f"{server.url}/note?text=cart", timeout=10)  # an anonymous session the app stored
        old_sid = str(browser.cookies.get("session"))
        results: dict[str, requests.Response] = {}
        thread = slow_write(server, old_sid, results)
        assert idp.sign_in_to_app(browser, f"{server.url}/whoami", login="bob").status_code == 302
        new_sid = str(browser.cookies.get("session"))
        thread.join(20)

        assert new_sid != old_sid
        assert "session=" not in results["slow"].headers.get("Set-Cookie", "")
        assert not store.has(old_sid), "the pre-sign-in session came back under its old id"
        assert browser.get(f"{server.url}/whoami", timeout=10).json()["sub"] == "bob"
        assert browser.get(f"{server.url}/note", timeout=10).text == "cart"


def test_concurrent_writes_to_a_live_session_still_land(store: Store, idp: LocalProvider) -> None:
    """The guard refuses only writes to a deleted record, not ordinary ones."""
    with LiveServer(store.app, APP_PORT) as server:
        browser = sign_in_browser(server, idp)
        sid = str(browser.cookies.get("session"))
        results: dict[str, requests.Response] = {}
        thread = slow_write(server, sid, results)
        browser.get(f"{server.url}/note?text=early", timeout=10)
        thread.join(20)
        assert browser.get(f"{server.url}/note", timeout=10).text == "late"
        assert browser.get(f"{server.url}/whoami", timeout=10).json()["sub"] == "alice"


@pytest.mark.filterwarnings("ignore:The 'use_signer' option is deprecated:DeprecationWarning")
def test_sign_out_sticks_with_signed_session_ids_too(
    make_app: Callable[..., Flask], idp: LocalProvider, tmp_path: Path
) -> None:
    cache = safe_store.SessionFileCache(str(tmp_path / "signed"))
    store_app = make_app(flask_config={"SESSION_CACHELIB": cache, "SESSION_USE_SIGNER": True})
    with LiveServer(store_app, APP_PORT) as server:
        browser = sign_in_browser(server, idp)
        old_cookie = str(browser.cookies.get("session"))
        results: dict[str, requests.Response] = {}
        thread = slow_write(server, old_cookie, results)
        assert browser.get(f"{server.url}/logout", headers=SAME_ORIGIN, allow_redirects=False).status_code == 302
        thread.join(20)
        again = requests.get(f"{server.url}/whoami", cookies={"session": old_cookie}, headers=JSON, timeout=10)
        assert again.status_code == 401


# --- 3. anonymous traffic costs the store nothing ------------------------------------------------


#: A step-up's claims request for an authentication context, as a view with ``acrs`` sends it.
_ACRS_CLAIMS = base64.urlsafe_b64encode(b'{"id_token": {"acrs": {"essential": true, "value": "c1"}}}').decode()

#: Sign-in starts anyone can send: plain, a step-up (max_age, claims), with sign-in options.
ANONYMOUS_STARTS = [
    "next=/profile",
    "max_age=0&next=/profile",
    f"claims={_ACRS_CLAIMS}&next=/profile",
    "prompt=login&login_hint=a%40example.com&domain_hint=example.com&next=/profile",
]


@pytest.mark.parametrize("query", ANONYMOUS_STARTS)
def test_a_thousand_anonymous_sign_ins_leave_nothing_in_the_store(store: Store, query: str) -> None:
    client = store.app.test_client()
    for _ in range(1000):
        response = client.get(f"/login?{query}")
        assert response.status_code == 302
    for path in ("/profile", "/whoami", "/graph"):
        assert client.get(path).status_code == 302
    assert client.get("/").status_code == 200
    assert store.keys() == [], f"anonymous visitors left {len(store.keys())} entries"


@pytest.mark.redis
def test_signed_in_users_survive_an_anonymous_flood_on_a_memory_capped_redis(
    make_app: Callable[..., Flask], sign_in: SignIn, redis_server: RedisServer
) -> None:
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    # Room for the signed-in users and about 500 KB more: a few hundred stored sign-ins.
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 600_000)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        app = make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client})
        users: dict[str, FlaskClient] = {}
        for login in ("ann", "ben", "cat"):
            users[login] = app.test_client()
            assert sign_in(users[login], "/login?next=/whoami", login=login).status_code == 302
        keys_before = set(client.keys("*"))

        # 4,000 anonymous sign-in starts, each as a new browser: about 4 MB had each been stored.
        flood = app.test_client(use_cookies=False)
        for index in range(4_000):
            start = ANONYMOUS_STARTS[index % len(ANONYMOUS_STARTS)].replace("/profile", f"/profile%3Fn%3D{index}")
            assert flood.get(f"/login?{start}").status_code == 302

        assert set(client.keys("*")) == keys_before
        for login, browser in users.items():
            assert browser.get("/whoami").get_json()["sub"] == login
    finally:
        client.config_set("maxmemory", "0")


@pytest.mark.redis
def test_a_full_redis_is_a_503_at_the_callback_and_sign_in_works_once_it_has_room(
    make_app: Callable[..., Flask], idp: LocalProvider, redis_server: RedisServer
) -> None:
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # no room for a session: every write that grows memory is refused
    try:
        app = make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client})
        browser = app.test_client()
        answer = idp.sign_in_to_app(browser, "/whoami")
        body = answer.get_data(as_text=True)
        assert answer.status_code == 503, body[:300]
        assert "Traceback" not in body and answer.headers["Retry-After"]
        assert browser.get("/whoami", headers=JSON).status_code == 401  # nobody half signed in
        client.config_set("maxmemory", "0")
        assert idp.sign_in_to_app(browser, "/whoami").status_code == 302
        assert browser.get("/whoami").get_json()["sub"] == "alice"
    finally:
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")


def test_the_default_file_store_sweeps_expired_sessions(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "default-store"
    app = make_app(flask_config={"SESSION_TYPE": None, "SESSION_CACHELIB": None, "SESSION_FILE_DIR": str(directory)})
    app.permanent_session_lifetime = 60  # type: ignore[assignment]
    for index in range(20):
        app.test_client().get(f"/note?text={index}")
    assert len(list(directory.iterdir())) == 20

    # An hour later: every session has expired, and the sweep is due (it runs every PRUNE_INTERVAL).
    later = time.time() + 3600
    assert safe_store.PRUNE_INTERVAL < 3600
    monkeypatch.setattr(safe_store, "clock", lambda: later)
    fresh = app.test_client()
    fresh.get("/note?text=new")  # the write that sweeps
    assert len(list(directory.iterdir())) == 1


# --- 5. a write to the store is not code execution -----------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_planted_in_the_store_is_refused_not_run(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    sid = "planted-session-id-0123456789"
    store.plant(sid, pickle.dumps({"_identity_user": _Payload(marker)}))
    client = store.app.test_client(use_cookies=False)
    with caplog.at_level(logging.WARNING, logger="identity_flask"):
        response = client.get("/whoami", headers={**JSON, "Cookie": f"session={sid}"})
    assert not marker.exists(), "the store's content was unpickled"
    assert response.status_code == 401  # a fresh, signed-out session
    assert any("Refused session data" in r.getMessage() for r in caplog.records)
    # The app still works for that browser.
    assert client.get("/", headers={"Cookie": f"session={sid}"}).status_code == 200


def test_the_extension_sets_a_serializer_without_pickle_on_every_store_it_builds(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = make_app()
    interface: Any = app.session_interface
    assert isinstance(interface.serializer, safe_store.SessionSerializer)
    assert isinstance(interface.cache.serializer, safe_store.CacheSerializer)


@pytest.mark.redis
def test_a_refresh_that_cannot_be_stored_is_a_503_and_the_user_keeps_their_session(
    make_app: Callable[..., Flask], idp: LocalProvider, redis_server: RedisServer
) -> None:
    """A full store at the moment a refreshed cache is written back: a 503, nothing kept in the
    process for long, and the user's session, refresh token included, still works after."""
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    app = make_app(client_id=SHORT_CLIENT_ID, flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client})
    browser = app.test_client()
    assert idp.sign_in_to_app(browser, "/token").status_code == 302
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # no room to grow: every write that grows memory is refused
    try:
        answer = browser.get("/token", headers=JSON)  # 5-second tokens: this view refreshes
        assert answer.status_code == 503, answer.get_data(as_text=True)[:300]
        assert answer.get_json()["error"] == "temporarily_unavailable"
    finally:
        client.config_set("maxmemory", "0")
    again = browser.get("/token", headers=JSON)
    assert again.status_code == 200 and again.get_json()["sub"] == "alice"
