"""The user's token cache in the session: read without MSAL, refreshed once, kept small.

Whether a page view asks MSAL at all is seen with the ``msal_asked`` spy, which
records each silent token request the app makes to MSAL and passes it on; MSAL
and the provider answer as usual. Time is moved with a fake ``time.time``.
Refresh grants are counted in the provider's own request log.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msal
import pytest
import requests
from conftest import APP_PORT, LiveServer, SignIn, b2c_settings, burst, session_cookie, stored_session
from flask import Flask
from flask.testing import FlaskClient
from localidp import MEDIUM_CLIENT_ID, MEDIUM_TOKEN_SECONDS, SHORT_CLIENT_ID, TENANT_ID, LocalProvider

from identity_flask import client as client_module
from identity_flask import session_data, tokens
from identity_flask.client import IdentityClient
from identity_flask.session_data import ACCOUNT_KEY, CACHE_KEY, USER_KEY

TOKEN_PATH = "/oauth2/v2.0/token"


@pytest.fixture
def msal_asked(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A spy, not a mock: the scopes of every silent token request made to MSAL, which still answers it."""
    asked: list[list[str]] = []
    real = msal.ClientApplication.acquire_token_silent_with_error

    def spy(self: msal.ClientApplication, scopes: list[str], account: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(list(scopes))
        return real(self, scopes, account, *args, **kwargs)

    monkeypatch.setattr(msal.ClientApplication, "acquire_token_silent_with_error", spy)
    return asked


def at(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """Make it ``moment`` for the app (and MSAL)."""
    monkeypatch.setattr(client_module.time, "time", lambda: moment)


def token(client: FlaskClient, login: str = "alice", path: str = "/token") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    body = response.get_json()
    if "sub" in body:
        assert body["sub"] == login
    return str(body["access_token"])


def stored(client: FlaskClient) -> dict[str, Any]:
    data = stored_session(client.application, session_cookie(client) or "")
    assert data is not None
    return data


def grants(idp: LocalProvider) -> list[dict[str, Any]]:
    return [e for e in idp.log() if e["method"] == "POST" and e["path"].endswith(TOKEN_PATH)]


# --- served from the session, never another user's ---------------------------------------------


def test_each_user_is_served_the_token_in_their_own_cache_without_asking_msal(
    app: Flask, sign_in: SignIn, msal_asked: list[list[str]]
) -> None:
    first, second = app.test_client(), app.test_client()
    assert sign_in(first, "/token", login="cache-one").status_code == 302
    assert sign_in(second, "/token", login="cache-two").status_code == 302
    for _ in range(3):
        for client, login in ((first, "cache-one"), (second, "cache-two")):
            served = token(client, login)
            cache = stored(client)[CACHE_KEY]
            assert served in {e["secret"] for e in cache["AccessToken"].values()}
    assert token(first, "cache-one") != token(second, "cache-two")
    assert msal_asked == []  # every view read its token straight from the session


@pytest.mark.parametrize("kind", ["entra", "b2c", "oidc"])
def test_every_kind_of_authority_is_served_from_the_session(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, msal_asked: list[list[str]], kind: str
) -> None:
    settings: dict[str, Any] = {
        "entra": {},
        "b2c": {k: v for k, v in b2c_settings(idp).items() if k != "client_id"} | {"authority": None},
        "oidc": {"authority": None, "oidc_authority": idp.oidc_authority},
    }[kind]
    app = make_app(**settings)
    client = app.test_client()
    assert sign_in(client, "/token", login=f"kind-{kind}").status_code == 302
    first = token(client, f"kind-{kind}")
    assert token(client, f"kind-{kind}") == first
    assert msal_asked == []  # MSAL's cache lookup, done without MSAL, for this authority too


def test_a_token_inside_msals_expiry_margin_is_refreshed(
    make_app: Callable[..., Flask], sign_in: SignIn, msal_asked: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(client_id=MEDIUM_CLIENT_ID)  # 400-second tokens: MSAL refreshes them after 100 seconds
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    issued_at = time.time()
    first = token(client)
    usable = MEDIUM_TOKEN_SECONDS - tokens.EXPIRY_MARGIN
    at(monkeypatch, issued_at + usable - 10)
    assert token(client) == first
    assert msal_asked == []  # still usable, as MSAL itself would say
    at(monkeypatch, issued_at + usable + 10)
    refreshed = token(client)
    assert refreshed != first and len(msal_asked) == 1  # MSAL was asked, and refreshed it
    assert token(client) == refreshed and len(msal_asked) == 1  # then read from the session again


def test_short_lived_tokens_are_refreshed_for_every_view(
    make_app: Callable[..., Flask], sign_in: SignIn, msal_asked: list[list[str]]
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)  # 5-second tokens, inside MSAL's margin from the start
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    served = [token(client) for _ in range(3)]
    assert len(set(served)) == 3 and len(msal_asked) == 3


def test_a_restored_session_record_serves_only_what_it_holds(app: Flask, sign_in: SignIn) -> None:
    """Sign-out leaves nothing behind in the process: a record put back (a restored backup of
    the store, say) is served from its own content, as any session is."""
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    first = token(client)
    sid = session_cookie(client)
    assert sid is not None
    store = app.config["SESSION_CACHELIB"]
    key = app.session_interface.key_prefix + sid  # type: ignore[attr-defined]
    record = store.get(key)
    assert client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
    assert not store.has(key)
    assert client.get("/token").status_code == 302
    store.set(key, record)
    client.set_cookie("session", sid)
    assert token(client) == first


def test_the_cache_reader_answers_as_msal_would(app: Flask, sign_in: SignIn) -> None:
    """For caches full of near misses, whatever the reader serves is what MSAL serves."""
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    identity: IdentityClient = app.extensions["identity"].client
    data = stored(client)
    account = data[ACCOUNT_KEY]
    assert identity._where is not None
    client_id, instance, tenant = identity._where
    now = int(time.time())

    def entry(target: str, secret: str, **extra: Any) -> dict[str, Any]:
        base = {
            "credential_type": "AccessToken",
            "secret": secret,
            "home_account_id": account,
            "environment": instance,
            "client_id": client_id,
            "realm": tenant,
            "target": target,
            "token_type": "Bearer",
            "cached_at": str(now),
            "expires_on": str(now + 3600),
            "extended_expires_on": str(now + 3600),
        }
        return {**base, **extra}

    near_misses = [
        entry("User.Read", "expired", expires_on=str(now - 1)),
        entry("User.Read", "inside-margin", expires_on=str(now + tokens.EXPIRY_MARGIN - 1)),
        entry("User.Read", "other-user", home_account_id="someone-else." + TENANT_ID),
        entry("User.Read", "other-client", client_id="another-app"),
        entry("User.Read", "other-tenant", realm="another-tenant"),
        entry("User.Read", "other-cloud", environment="login.example.org"),
        entry("user.read", "other-case"),
        entry("User.ReadWrite", "longer-name"),
    ]
    # (entries, scopes asked, what the reader serves): it never serves what MSAL would not, and
    # leaves to MSAL the entries MSAL treats specially (aging, bound to a key).
    cases: list[tuple[list[dict[str, Any]], list[str], str | None]] = [
        (near_misses, ["User.Read"], None),
        ([*near_misses, entry("Files.Read User.Read openid", "superset")], ["User.Read"], "superset"),
        ([entry("Files.Read User.Read", "both")], ["User.Read", "Files.Read"], "both"),
        ([entry("User.Read", "one")], ["User.Read", "Files.Read"], None),
        ([entry("User.Read", "aging", refresh_on=str(now - 1))], ["User.Read"], None),
        ([entry("User.Read", "pop-bound", key_id="k1")], ["User.Read"], None),
        ([entry("User.Read", "not-yet-aging", refresh_on=str(now + 60))], ["User.Read"], "not-yet-aging"),
    ]
    for entries, scopes, expected in cases:
        cache = {
            **{k: v for k, v in data[CACHE_KEY].items() if k not in ("AccessToken", "RefreshToken")},
            "AccessToken": {f"k{i}": e for i, e in enumerate(entries)},
        }
        ours = tokens.cached_token(cache, identity._where, account, scopes, time.time())
        assert (ours or {}).get("access_token") == expected, (scopes, ours)
        msal_cache = msal.SerializableTokenCache()
        msal_cache.deserialize(json.dumps(cache))
        msal_app = identity.msal_app(msal_cache)
        (user,) = msal_app.get_accounts()
        theirs = msal_app.acquire_token_silent_with_error(scopes, account=user)  # no refresh token: no request
        if ours is not None:
            assert theirs is not None and theirs["access_token"] == ours["access_token"], (scopes, theirs)


# --- one refresh per user at a time ------------------------------------------------------------


def test_parallel_requests_after_expiry_share_one_refresh_grant(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)  # 5-second tokens: every view needs a refresh
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    cookie = session_cookie(client) or ""
    idp.log(clear=True)
    idp.fault(TOKEN_PATH, delay=500)  # a slowish provider: all 8 requests arrive during the refresh
    with LiveServer(app, APP_PORT) as server:
        results = burst(f"{server.url}/token", cookie, 8)
    assert [r.status_code for r in results] == [200] * 8
    assert {r.json()["sub"] for r in results} == {"alice"}
    assert len({r.json()["access_token"] for r in results}) == 1
    assert len(grants(idp)) == 1
    cache = stored(client)[CACHE_KEY]
    assert len(cache["RefreshToken"]) == 1 and len(cache["Account"]) == 1
    refreshes = app.extensions["identity"].client.refreshes
    assert len(refreshes) <= 1  # the finished refresh, kept a few seconds
    later = time.monotonic() + tokens.LINGER_SECONDS + 1
    refreshes.clock = lambda: later
    assert len(refreshes) == 0  # then nothing


def test_requests_waiting_for_a_stalled_refresh_give_up_with_it(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID, timeout=1)
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    cookie = session_cookie(client) or ""
    idp.log(clear=True)
    idp.fault(TOKEN_PATH, delay=4000, times=4)
    started = time.monotonic()
    with LiveServer(app, APP_PORT) as server:
        results = burst(f"{server.url}/token", cookie, 4)
    took = time.monotonic() - started
    assert [r.status_code for r in results] == [503] * 4
    assert all(r.json()["error"] == "temporarily_unavailable" for r in results)
    assert took < 3.5, "a waiting request waited longer than the provider timeout"
    assert len(grants(idp)) == 1  # one request met the stalled provider, not one after another
    idp.clear_faults()
    assert token(client) is not None  # the next view refreshes as usual


def test_parallel_requests_of_different_users_do_not_wait_for_each_other(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)
    clients = {login: app.test_client() for login in ("par-one", "par-two", "par-three")}
    for login, client in clients.items():
        assert sign_in(client, "/token", login=login).status_code == 302
    idp.log(clear=True)
    idp.fault(TOKEN_PATH, delay=1000, times=3)  # each refresh held a second at the provider
    results: dict[str, list[requests.Response]] = {}
    with LiveServer(app, APP_PORT) as server:
        threads = [
            threading.Thread(
                target=lambda c=c, n=n: results.__setitem__(n, burst(f"{server.url}/token", session_cookie(c) or "", 3))
            )
            for n, c in clients.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    for login, answers in results.items():
        assert [r.status_code for r in answers] == [200] * 3
        assert {r.json()["sub"] for r in answers} == {login}
    arrivals = sorted(e["t"] for e in grants(idp))
    assert len(arrivals) == 3  # one per user
    # All three reached the provider before the first was answered: no user waited for another.
    assert arrivals[-1] - arrivals[0] < 1000, arrivals


# --- what the session keeps --------------------------------------------------------------------


def consent(client: FlaskClient, sign_in: SignIn, idp: LocalProvider, path: str, login: str) -> str:
    """Open ``path`` and consent to its scope through the provider (``login`` has not yet)."""
    response = client.get(path)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    back = sign_in.finish(client, idp.sign_in(sign_in.start(client, path), login=login))
    assert back.status_code == 302 and back.location == path
    return token(client, login, path=path)


def test_consent_sign_ins_keep_one_refresh_token_and_it_still_refreshes(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(client_id=MEDIUM_CLIENT_ID)
    client = app.test_client()
    assert sign_in(client, "/profile", login="consent-keeper").status_code == 302
    paths = ("/token", "/files", "/local-api")
    first = {path: consent(client, sign_in, idp, path, "consent-keeper") for path in paths}
    data = stored(client)
    cache = data[CACHE_KEY]
    assert len(cache["RefreshToken"]) == 1  # four sign-ins, one refresh token
    assert "IdToken" not in cache  # the claims beside the cache are its only copy
    assert len(cache["AccessToken"]) == 4  # the sign-in's own, and one per scope set
    assert data[USER_KEY]["sub"] == "consent-keeper"

    # Every token appears once in the stored session, and the extension's own keys are small.
    whole = json.dumps(data)
    secrets = [e["secret"] for section in ("AccessToken", "RefreshToken") for e in cache[section].values()]
    assert all(whole.count(secret) == 1 for secret in secrets)
    bookkeeping = {k: v for k, v in data.items() if k not in (CACHE_KEY, USER_KEY)}
    assert len(json.dumps(bookkeeping)) <= 300, bookkeeping

    # The trimmed cache still refreshes each scope set, with the one refresh token.
    idp.log(clear=True)
    at(monkeypatch, time.time() + MEDIUM_TOKEN_SECONDS)
    for path in paths:
        assert token(client, "consent-keeper", path=path) != first[path]
    assert len(grants(idp)) == 3
    assert len(stored(client)[CACHE_KEY]["RefreshToken"]) == 1


def test_revoked_refresh_tokens_cost_one_provider_request(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(client_id=MEDIUM_CLIENT_ID)
    client = app.test_client()
    assert sign_in(client, "/profile", login="consent-revoked").status_code == 302
    for path in ("/token", "/files", "/local-api"):
        consent(client, sign_in, idp, path, "consent-revoked")
    assert idp.revoke_refresh_tokens() >= 1
    idp.log(clear=True)
    at(monkeypatch, time.time() + MEDIUM_TOKEN_SECONDS)
    response = client.get("/token")
    assert response.status_code == 302  # back to sign in, to get a new refresh token
    assert len(grants(idp)) == 1


# --- flat in users ------------------------------------------------------------------------------


def test_a_hundred_thousand_users_leave_nothing_in_the_process(app: Flask, sign_in: SignIn) -> None:
    """Memory bound, counted in bytes the process keeps, not in time: serving the cached
    tokens of 100,000 distinct users keeps nothing per user."""
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    token(client)
    template = stored(client)
    account = template[ACCOUNT_KEY]
    (entry,) = template[CACHE_KEY]["AccessToken"].values()
    identity: IdentityClient = app.extensions["identity"].client

    def session_of(n: int) -> dict[str, Any]:
        """User ``n``: the signed-in user's session, with an id and a token of their own."""
        own = f"{n:08d}{account[8:]}"
        cache = {**template[CACHE_KEY], "AccessToken": {own: {**entry, "home_account_id": own, "secret": f"at-{n}"}}}
        return {**template, ACCOUNT_KEY: own, CACHE_KEY: cache}

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(100_000):
            served = identity.token_for(session_of(n), ["User.Read"])
            assert served is not None and served["access_token"] == f"at-{n}"
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"the process kept {grown} bytes after 100,000 users"
    assert len(identity.refreshes) == 0
    assert identity.token_for(session_of(7), ["Files.Read"]) is None  # not in that cache: MSAL says so


class Refused:
    """Stands in for a module the cache reader must not use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the cache reader used {name}")


def test_the_cache_reader_parses_nothing(app: Flask, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serving a cached token neither parses nor serializes the cache, nor asks MSAL."""
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    first = token(client)

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the cache was handed to MSAL")

    monkeypatch.setattr(client_module, "json", Refused())
    monkeypatch.setattr(session_data, "json", Refused())
    monkeypatch.setattr(msal.SerializableTokenCache, "deserialize", refuse)
    monkeypatch.setattr(msal.ClientApplication, "acquire_token_silent_with_error", refuse)
    assert token(client) == first
    monkeypatch.undo()
    assert token(client) == first


# --- which refresh tokens stay -----------------------------------------------------------------


def refresh_token(target: str, modified: int, secret: str, account: str = "a.t") -> dict[str, Any]:
    return {
        "credential_type": "RefreshToken",
        "secret": secret,
        "home_account_id": account,
        "environment": "login.example",
        "client_id": "app",
        "target": target,
        "last_modification_time": str(modified),
    }


def kept_secrets(cache: dict[str, Any]) -> set[str]:
    return {e["secret"] for e in cache.get("RefreshToken", {}).values()}


def test_microsoft_caches_keep_the_newest_refresh_token_per_account() -> None:
    older = {"RefreshToken": {"1": refresh_token("User.Read", 100, "first"), "x": refresh_token("A", 1, "x", "b.t")}}
    newer = {"RefreshToken": {"2": refresh_token("Files.Read", 200, "second")}, "IdToken": {"i": {"secret": "id"}}}
    merged = tokens.merged(older, newer, time.time())
    assert kept_secrets(merged) == {"second", "x"}  # one per account
    assert "IdToken" not in merged
    same_second = {"RefreshToken": {"3": refresh_token("Mail.Read", 200, "third")}}
    assert kept_secrets(tokens.merged(newer, same_second, time.time())) == {"third"}  # a tie: the newer cache


def test_other_providers_keep_each_refresh_token_no_newer_one_covers() -> None:
    cache = {
        "RefreshToken": {
            "1": refresh_token("openid User.Read", 100, "user-read"),
            "2": refresh_token("openid Files.Read", 200, "files-read"),
            "3": refresh_token("openid User.Read Files.Read", 300, "both"),
            "4": refresh_token("openid Mail.Read", 50, "mail-read"),
        }
    }
    kept = tokens.trimmed(cache, time.time(), scope_free_refresh=False)
    assert kept_secrets(kept) == {"both", "mail-read"}


def test_expired_access_tokens_leave_the_stored_cache() -> None:
    now = time.time()
    cache = {
        "AccessToken": {
            "old": {"secret": "old", "expires_on": str(int(now) - 1)},
            "new": {"secret": "new", "expires_on": str(int(now) + 60)},
            "odd": {"secret": "odd", "expires_on": "soon"},
        }
    }
    assert list(tokens.trimmed(cache, now)["AccessToken"]) == ["new"]


def test_a_session_written_by_an_earlier_version_is_read_and_converted(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    first = token(client)
    with client.session_transaction() as session:
        session[CACHE_KEY] = json.dumps(session[CACHE_KEY])  # the serialized form earlier versions kept
    assert token(client) == first
    assert isinstance(stored(client)[CACHE_KEY], dict)
    with client.session_transaction() as session:
        session[CACHE_KEY] = "{not json"
    assert client.get("/token").status_code == 302  # unreadable: sign in again, never a 500


# --- failures and damaged caches ----------------------------------------------------------------


def test_a_failed_refresh_is_shared_by_its_waiters_only(
    make_app: Callable[..., Flask], idp: LocalProvider, sign_in: SignIn
) -> None:
    """A request that comes after a failed refresh asks the provider again, even while the
    user's finished refresh is still kept."""
    app = make_app(client_id=SHORT_CLIENT_ID, timeout=1)
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    token(client)  # a refresh that worked: kept a few seconds for late readers
    idp.fault(TOKEN_PATH, delay=3000)
    assert client.get("/token", headers={"Accept": "application/json"}).status_code == 503
    time.sleep(0.1)
    idp.log(clear=True)
    assert token(client) is not None  # not the kept failure: the provider was asked, and answered
    assert len(grants(idp)) == 1


@pytest.mark.parametrize(
    ("damage", "status"),
    [
        ({"AccessToken": [1, 2]}, 302),
        ({"AccessToken": {"k": {"expires_on": "1e999", "target": "User.Read", "secret": "x"}}}, 302),
        ({"AccessToken": "text", "RefreshToken": {"r": {"secret": 5, "home_account_id": ["list"]}}}, 302),
        ({"Account": {"a": {"home_account_id": {"not": "hashable"}}}}, 200),  # the token is still good
    ],
    ids=["list-section", "endless-expiry", "wrong-types", "odd-account"],
)
def test_a_damaged_cache_sends_the_user_to_sign_in_not_a_500(
    app: Flask, sign_in: SignIn, damage: dict[str, Any], status: int
) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    with client.session_transaction() as session:
        session[CACHE_KEY] = {**session[CACHE_KEY], **damage}
    response = client.get("/token")
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert client.get("/whoami").status_code == 200  # still signed in; only the tokens are gone
