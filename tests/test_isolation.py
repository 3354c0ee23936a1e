"""50 users signing in at once to gunicorn workers sharing one Redis: nobody sees anyone else.

The deployment is the load benchmark's (``tests/redisapp.py`` under gunicorn): several
sync workers, sessions in a real ``redis-server``, the real local provider.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import redis
import requests
from conftest import APP_PORT, REDIRECT_URI
from localidp import CLIENT_ID, CLIENT_SECRET, LocalProvider
from servers import Gunicorn, RedisServer

from identity_flask.session_data import CACHE_KEY, USER_KEY

USERS = 50
ROUNDS = 3
pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def deployment(provider: LocalProvider, redis_server: RedisServer) -> Iterator[tuple[Gunicorn, redis.Redis]]:
    env = {
        "SECRET_KEY": os.urandom(16).hex(),
        "REDIS_URL": redis_server.url,
        "IDENTITY_CLIENT_ID": CLIENT_ID,
        "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
        "IDENTITY_AUTHORITY": provider.entra_authority,
        "IDENTITY_REDIRECT_URI": REDIRECT_URI,
        "REQUESTS_CA_BUNDLE": str(provider.ca_bundle),
    }
    with Gunicorn(APP_PORT, env, workers=4) as server:
        yield server, redis.Redis.from_url(redis_server.url)


@dataclass
class User:
    login: str
    browser: requests.Session = field(default_factory=requests.Session)
    token: str | None = None
    pids: set[int] = field(default_factory=set)

    @property
    def sid(self) -> str:
        return str(self.browser.cookies.get("session"))


def sign_in(server: Gunicorn, provider: LocalProvider, user: User) -> None:
    back = provider.sign_in_to_app(user.browser, f"{server.url}/token", login=user.login)
    assert back.status_code == 302 and back.headers["Location"] == "/token", back.text[:300]


def check(server: Gunicorn, provider: LocalProvider, user: User) -> None:
    """Every response names this user, and the token is always theirs."""
    me = user.browser.get(f"{server.url}/me", timeout=30)
    assert me.status_code == 200, me.text[:300]
    assert me.json()["sub"] == user.login and me.json()["name"] == user.login.capitalize()
    token = user.browser.get(f"{server.url}/token", timeout=30)
    assert token.status_code == 200, token.text[:300]
    body = token.json()
    assert body["sub"] == user.login
    if user.token is None:
        info = requests.get(
            provider.userinfo_endpoint, headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=30
        )
        assert info.status_code == 200 and info.json()["sub"] == user.login  # the provider agrees whose it is
        user.token = body["access_token"]
    assert body["access_token"] == user.token
    user.pids.update((me.json()["pid"], body["pid"]))


def journey(server: Gunicorn, provider: LocalProvider, user: User) -> User:
    user.browser.verify = str(provider.ca_bundle)
    sign_in(server, provider, user)
    for _ in range(ROUNDS):
        check(server, provider, user)
    return user


def stored(store: redis.Redis, sid: str) -> dict[str, Any] | None:
    raw = store.get("session:" + sid)
    if raw is None:
        return None
    data: dict[str, Any] = msgspec.msgpack.decode(raw)
    return data


def test_parallel_users_see_only_their_own_session_and_logout_clears_the_store(
    deployment: tuple[Gunicorn, redis.Redis], provider: LocalProvider
) -> None:
    server, store = deployment
    users = [User(f"user{index:02d}") for index in range(USERS)]
    with ThreadPoolExecutor(max_workers=USERS) as pool:
        done = list(pool.map(lambda u: journey(server, provider, u), users))
    assert len({u.token for u in done}) == USERS
    assert len(set().union(*(u.pids for u in done))) > 1, "only one worker answered"

    # The store holds one session per user, with that user's claims and token cache only.
    sids = {user.login: user.sid for user in done}
    secrets: dict[str, set[str]] = {}
    for user in done:
        data = stored(store, sids[user.login])
        assert data is not None and data[USER_KEY]["sub"] == user.login
        cache = data[CACHE_KEY]
        assert {a["username"] for a in cache["Account"].values()} == {f"{user.login}@example.test"}
        secrets[user.login] = {e["secret"] for kind in ("AccessToken", "RefreshToken") for e in cache[kind].values()}
        assert user.token in secrets[user.login]

    # Half the users sign out, in parallel; their records, and their tokens, leave the store.
    leaving, staying = done[::2], done[1::2]

    def logout(user: User) -> requests.Response:
        same_origin = {"Sec-Fetch-Site": "same-origin"}
        return user.browser.get(f"{server.url}/logout", headers=same_origin, allow_redirects=False, timeout=30)

    with ThreadPoolExecutor(max_workers=len(leaving)) as pool:
        answers = list(pool.map(logout, leaving))
    assert all(a.status_code == 302 and a.headers["Location"].startswith(provider.origin) for a in answers)
    everything = b"".join(store.get(key) or b"" for key in store.scan_iter("*"))
    for user in leaving:
        assert user.browser.cookies.get("session") is None
        assert stored(store, sids[user.login]) is None
        assert not any(secret.encode() in everything for secret in secrets[user.login])
        assert (
            user.browser.get(f"{server.url}/me", headers={"Accept": "application/json"}, timeout=30).status_code == 401
        )
    for user in staying:
        check(server, provider, user)
        data = stored(store, sids[user.login])
        assert data is not None and data[USER_KEY]["sub"] == user.login
