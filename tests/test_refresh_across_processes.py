"""One user's burst of requests after their token expired, spread over gunicorn workers
sharing Redis: each process makes at most one refresh grant, and every answer is theirs.

The deployment is ``tests/redisapp.py`` under gunicorn with two threaded workers, the
real local provider issuing 5-second access tokens (every view needs a refresh), and
its token endpoint slowed down so the burst arrives while the refreshes are under way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from conftest import APP_PORT, REDIRECT_URI, burst
from localidp import CLIENT_SECRET, SHORT_CLIENT_ID, LocalProvider
from servers import Gunicorn, RedisServer

pytestmark = pytest.mark.redis

WORKERS = 2
PARALLEL = 16
TOKEN_PATH = "/oauth2/v2.0/token"


@pytest.fixture(scope="module")
def deployment(provider: LocalProvider, redis_server: RedisServer) -> Iterator[Gunicorn]:
    env = {
        "SECRET_KEY": os.urandom(16).hex(),
        "REDIS_URL": redis_server.url,
        "IDENTITY_CLIENT_ID": SHORT_CLIENT_ID,
        "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
        "IDENTITY_AUTHORITY": provider.entra_authority,
        "IDENTITY_REDIRECT_URI": REDIRECT_URI,
        "REQUESTS_CA_BUNDLE": str(provider.ca_bundle),
    }
    with Gunicorn(APP_PORT, env, workers=WORKERS, threads=PARALLEL) as server:
        yield server


def test_a_burst_after_expiry_makes_at_most_one_grant_per_process(
    deployment: Gunicorn, provider: LocalProvider
) -> None:
    browser = requests.Session()
    browser.verify = str(provider.ca_bundle)
    back = provider.sign_in_to_app(browser, f"{deployment.url}/token", login="burst-user")
    assert back.status_code == 302 and back.headers["Location"] == "/token", back.text[:300]
    cookie = str(browser.cookies.get("session"))

    pids: set[int] = set()
    for attempt in range(3):  # until the burst has reached both workers
        provider.log(clear=True)
        provider.fault(TOKEN_PATH, delay=700, times=WORKERS)
        answers = burst(f"{deployment.url}/token", cookie, PARALLEL)
        assert [a.status_code for a in answers] == [200] * PARALLEL, [a.text[:200] for a in answers]
        assert {a.json()["sub"] for a in answers} == {"burst-user"}
        pids = {a.json()["pid"] for a in answers}
        grants = [e for e in provider.log() if e["method"] == "POST" and e["path"].endswith(TOKEN_PATH)]
        assert 1 <= len(grants) <= len(pids), (attempt, len(grants), pids)
        # Requests of one process share one token; across processes, one token each.
        assert len({a.json()["access_token"] for a in answers}) == len(grants)
        if len(pids) == WORKERS:
            break
    provider.clear_faults()
    assert len(pids) == WORKERS, "the burst never reached both workers"
