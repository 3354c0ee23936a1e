"""Signing out: ``logout_hint`` and the encoded return address sent to the provider's
end-session endpoint, and front-channel logout (the provider ends this app's session
through a hidden frame, without the browser's cookie), against the local provider."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import redis
from conftest import (
    APP_ORIGIN,
    APP_PORT,
    LiveServer,
    b2c_settings,
    entra_settings,
    session_cookie,
    sign_in_on_provider_page,
    stored_session,
)
from flask import Flask
from flask.sessions import SessionInterface, SessionMixin
from flask.testing import FlaskClient
from localidp import CLIENT_ID, LocalProvider, path_and_query, query_of
from servers import RedisServer
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from identity_flask import Auth, frontchannel
from identity_flask.session_data import USER_KEY

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
FRONTCHANNEL_URL = f"{APP_ORIGIN}/frontchannel-logout"


@pytest.fixture
def frontchannel_registered(idp: LocalProvider) -> Iterator[LocalProvider]:
    """The provider with this app's front-channel logout URL registered for ``CLIENT_ID``."""
    idp.clear_frontchannel()
    idp.register_frontchannel(CLIENT_ID, [FRONTCHANNEL_URL])
    yield idp
    idp.clear_frontchannel()


class User:
    """One browser signed in to the app: its app client and its session with the provider."""

    def __init__(self, app: Flask, idp: LocalProvider, login: str, provider_browser: Any = None) -> None:
        self.app = app
        self.client = app.test_client()
        self.provider_browser = provider_browser or idp.browser()
        answer = idp.sign_in_to_app(self.client, "/whoami", login=login, browser=self.provider_browser)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        self.sid = session_cookie(self.client)
        assert self.sid is not None
        self.claims: dict[str, Any] = (stored_session(app, self.sid) or {})[USER_KEY]

    def signed_in(self) -> bool:
        answer = self.client.get("/whoami", headers={"Accept": "application/json"})
        assert answer.status_code in (200, 401), answer.status_code
        return answer.status_code == 200

    def frontchannel_query(self, **change: str | None) -> dict[str, str]:
        query = {"iss": self.claims["iss"], "sid": self.claims["sid"], **change}
        return {k: v for k, v in query.items() if v is not None}


def frontchannel_get(app: Flask, url_or_path: str, **kwargs: Any) -> TestResponse:
    """The request a provider's hidden frame makes: by a browser that sends no cookie of the app."""
    stranger = app.test_client()
    target = path_and_query(url_or_path) if "://" in url_or_path else url_or_path
    answer: TestResponse = stranger.get(target, **kwargs)
    return answer


def sign_out_at_provider(idp: LocalProvider, user: User) -> list[str]:
    """The user signs out at the provider from elsewhere (another app); the front-channel
    URLs its page loads for this app, each then requested as the frame does."""
    done = idp.sign_out(idp.entra_authority + "/oauth2/v2.0/logout", browser=user.provider_browser)
    ours = [url for url in done.frontchannel if url.startswith(FRONTCHANNEL_URL + "?")]
    for url in ours:
        answer = frontchannel_get(user.app, url)
        assert answer.status_code == 200
    return ours


# ---- logout_hint and post_logout_redirect_uri ----


def test_logout_sends_the_login_hint_claim_as_logout_hint_and_no_id_token(app: Flask, idp: LocalProvider) -> None:
    alice = User(app, idp, "alice")
    hint = alice.claims["login_hint"]
    answer = alice.client.get("/logout", headers=SAME_ORIGIN)
    assert answer.status_code == 302
    assert answer.location.startswith(idp.entra_authority + "/oauth2/v2.0/logout?")
    query = query_of(answer.location)
    assert query == {"post_logout_redirect_uri": APP_ORIGIN + "/", "logout_hint": hint}
    assert not alice.signed_in()

    # The provider gets it as sent, signs the browser out and sends it back.
    done = idp.sign_out(answer.location, browser=alice.provider_browser)
    assert done.return_to == APP_ORIGIN + "/"
    [seen] = [e for e in idp.log() if e["path"].endswith("/oauth2/v2.0/logout")]
    assert seen["query"]["logout_hint"] == hint
    assert "id_token_hint" not in seen["query"]


def test_logout_sends_no_logout_hint_when_the_id_token_has_no_login_hint(app: Flask, idp: LocalProvider) -> None:
    carol = User(app, idp, "nohint-carol")  # an app registration without the optional claim
    assert "login_hint" not in carol.claims
    answer = carol.client.get("/logout", headers=SAME_ORIGIN)
    assert query_of(answer.location) == {"post_logout_redirect_uri": APP_ORIGIN + "/"}
    idp.sign_out(answer.location, browser=carol.provider_browser)
    [seen] = [e for e in idp.log() if e["path"].endswith("/oauth2/v2.0/logout")]
    assert "logout_hint" not in seen["query"]


def test_generic_oidc_logout_sends_client_id_and_logout_hint(
    make_app: Callable[..., Flask], idp: LocalProvider
) -> None:
    app = make_app(authority=None, oidc_authority=idp.oidc_authority)
    alice = User(app, idp, "alice")
    query = query_of(alice.client.get("/logout", headers=SAME_ORIGIN).location)
    assert query == {
        "post_logout_redirect_uri": APP_ORIGIN + "/",
        "logout_hint": alice.claims["login_hint"],
        "client_id": CLIENT_ID,
    }


def test_b2c_logout_leaves_logout_hint_out(make_app: Callable[..., Flask], idp: LocalProvider) -> None:
    app = make_app(**{**b2c_settings(idp), "authority": None})
    user = User(app, idp, "alice")
    assert user.claims["login_hint"]  # the token had one: B2C ignores it, so it is not sent
    answer = user.client.get("/logout", headers=SAME_ORIGIN)
    assert "/b2c_1_signupsignin/oauth2/v2.0/logout?" in answer.location.lower()
    assert query_of(answer.location) == {"post_logout_redirect_uri": APP_ORIGIN + "/"}


@pytest.mark.parametrize(
    "return_to",
    [
        "https://app.example/signed-out?from=logout&next=/a b",
        "https://app.example/au revoir/é?x=1+2&y=%41#fragment",
        "https://app.example/?logout_hint=evil&client_id=evil",
        "https://app.example/\u65e5\u672c?q=\u00fc&",
    ],
)
def test_post_logout_redirect_uri_is_sent_whole_and_percent_encoded(app: Flask, return_to: str) -> None:
    """Whatever the return address holds comes back out of the query as one value,
    unchanged: no ``+`` for a space, no ``&``, ``#`` or ``=`` left raw to split it."""
    client = app.extensions["identity"].client
    with app.test_request_context():
        url = client.logout_url(return_to, logout_hint="opaque hint/+=")
    query = urlsplit(url).query
    assert parse_qs(query, strict_parsing=True) == {
        "post_logout_redirect_uri": [return_to],
        "logout_hint": ["opaque hint/+="],
    }
    assert "+" not in query and " " not in query and "#" not in url
    assert query.isascii()


def test_the_return_address_of_a_view_with_spaces_and_accents_is_encoded_once(
    make_app: Callable[..., Flask], idp: LocalProvider
) -> None:
    app = make_app(post_logout_view="goodbye")

    @app.route("/au revoir/été")
    def goodbye() -> str:
        return "bye"

    alice = User(app, idp, "alice")
    location = alice.client.get("/logout", headers=SAME_ORIGIN).location
    assert query_of(location)["post_logout_redirect_uri"] == APP_ORIGIN + "/au%20revoir/%C3%A9t%C3%A9"
    assert "post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A" in location


# ---- front-channel logout, the default file store ----


def test_the_provider_signing_a_user_out_ends_their_session_here_and_no_other(
    app: Flask, frontchannel_registered: LocalProvider
) -> None:
    idp = frontchannel_registered
    alice, bob = User(app, idp, "alice"), User(app, idp, "bob")
    assert alice.claims["sid"] != bob.claims["sid"]

    frames = sign_out_at_provider(idp, alice)

    # The provider's page loaded this app's URL once, with Alice's issuer and sid.
    assert [query_of(url) for url in frames] == [alice.frontchannel_query()]
    assert stored_session(app, alice.sid or "") is None
    assert not alice.signed_in()
    assert bob.signed_in()
    assert stored_session(app, bob.sid or "") is not None


def test_two_app_sessions_of_one_provider_session_both_end(app: Flask, frontchannel_registered: LocalProvider) -> None:
    """Two browsers' worth of app sessions (say a second app profile) signed in through one
    provider session carry the same sid: the provider's sign-out ends both."""
    idp = frontchannel_registered
    first = User(app, idp, "alice")
    second = User(app, idp, "alice", provider_browser=first.provider_browser)  # single sign-on
    bob = User(app, idp, "bob")
    assert first.claims["sid"] == second.claims["sid"] and first.sid != second.sid

    sign_out_at_provider(idp, first)

    assert not first.signed_in() and not second.signed_in()
    assert bob.signed_in()


def test_one_user_in_two_browsers_signs_out_of_one(app: Flask, frontchannel_registered: LocalProvider) -> None:
    idp = frontchannel_registered
    laptop, phone = User(app, idp, "alice"), User(app, idp, "alice")
    assert laptop.claims["sid"] != phone.claims["sid"]  # two provider sessions

    sign_out_at_provider(idp, laptop)

    assert not laptop.signed_in()
    assert phone.signed_in()


def test_a_second_sign_in_in_the_same_browser_is_ended_by_its_own_sid_only(
    app: Flask, frontchannel_registered: LocalProvider
) -> None:
    idp = frontchannel_registered
    alice = User(app, idp, "alice")
    first_query = alice.frontchannel_query()
    # The same browser signs in again through a new provider session: new sid, new session id.
    again = idp.browser()
    answer = idp.sign_in_to_app(alice.client, "/login?next=/whoami", login="alice", browser=again)
    assert answer.status_code == 302
    renewed = session_cookie(alice.client) or ""
    assert renewed != alice.sid
    claims = (stored_session(app, renewed) or {})[USER_KEY]
    assert claims["sid"] != first_query["sid"]

    assert frontchannel_get(app, "/frontchannel-logout", query_string=first_query).status_code == 200
    assert alice.signed_in()  # the first provider session's end does not end the second sign-in

    second_query = {"iss": claims["iss"], "sid": claims["sid"]}
    assert frontchannel_get(app, "/frontchannel-logout", query_string=second_query).status_code == 200
    assert not alice.signed_in()


def test_signing_back_in_after_the_provider_ended_the_session_is_not_taken_for_a_loop(
    app: Flask, frontchannel_registered: LocalProvider
) -> None:
    """Two healthy sign-ins (a second for consent or step-up), then the provider's sign-out ends
    the session here: the browser's cookie now names a session that is gone, once. Signing back
    in at once works, and so does once more; the loop breaker needs each sign-in losing the last."""
    idp = frontchannel_registered
    alice = User(app, idp, "alice")
    again = idp.sign_in_to_app(alice.client, "/login?next=/whoami", login="alice", browser=alice.provider_browser)
    assert again.status_code == 302 and alice.signed_in()
    sign_out_at_provider(idp, alice)
    assert not alice.signed_in()
    back = idp.sign_in_to_app(alice.client, "/login?next=/whoami", login="alice", browser=alice.provider_browser)
    assert back.status_code == 302, back.get_data(as_text=True)[:400]
    assert alice.signed_in()
    assert idp.sign_in_to_app(alice.client, "/login?next=/whoami", login="alice").status_code == 302


def test_the_answer_is_empty_uncached_framable_and_the_same_whether_a_session_ended(
    app: Flask, idp: LocalProvider
) -> None:
    alice = User(app, idp, "alice")
    ended = frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query())
    assert not alice.signed_in()
    again = frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query())
    unknown = frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query(sid="no-such-sid"))
    for answer in (ended, again, unknown):
        assert answer.status_code == 200
        assert answer.data == b""
        assert answer.headers["Cache-Control"] == "no-cache, no-store"
        assert "X-Frame-Options" not in answer.headers
        assert "Content-Security-Policy" not in answer.headers
        assert "Set-Cookie" not in answer.headers
    assert [dict(a.headers) for a in (again, unknown)] == [dict(ended.headers)] * 2


HOSTILE: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
    "an unknown sid": lambda q: {"query_string": {**q, "sid": "0" * len(q["sid"])}},
    "the sid with another issuer": lambda q: {"query_string": {**q, "iss": q["iss"].replace("/v2.0", "/x/v2.0")}},
    "the sid of an issuer that is not a provider": lambda q: {"query_string": {**q, "iss": "https://evil.example"}},
    "the sid in another case": lambda q: {"query_string": {**q, "sid": q["sid"].swapcase()}},
    "the sid with a trailing space": lambda q: {"query_string": {**q, "sid": q["sid"] + " "}},
    "no sid": lambda q: {"query_string": {"iss": q["iss"]}},
    "an empty sid": lambda q: {"query_string": {**q, "sid": ""}},
    "a huge sid": lambda q: {"query_string": {**q, "sid": q["sid"] * 5000}},
    "a huge issuer": lambda q: {"query_string": {**q, "iss": q["iss"] + "/" * 100_000}},
    "two sids": lambda q: {"query_string": [("iss", q["iss"]), ("sid", "other"), ("sid", q["sid"])]},
    "a sid with a control character": lambda q: {"query_string": {**q, "sid": q["sid"] + "\n"}},
    "nothing": lambda q: {},
}
#: The status each hostile request gets: 200 for a well-formed one (nothing is said of what was
#: found), 400 for one of the wrong shape.
HOSTILE_STATUS = {
    "an unknown sid": 200,
    "the sid with another issuer": 200,
    "the sid of an issuer that is not a provider": 200,
    "the sid in another case": 200,
    "the sid with a trailing space": 200,
}


@pytest.mark.parametrize("attack", list(HOSTILE))
def test_a_front_channel_request_that_does_not_name_the_session_ends_nothing(
    app: Flask, idp: LocalProvider, attack: str
) -> None:
    alice = User(app, idp, "alice")
    answer = frontchannel_get(app, "/frontchannel-logout", **HOSTILE[attack](alice.frontchannel_query()))
    assert answer.status_code == HOSTILE_STATUS.get(attack, 400)
    assert answer.headers["Cache-Control"] == "no-cache, no-store"
    if answer.status_code == 400:
        assert alice.claims["sid"] not in answer.get_data(as_text=True)
    assert alice.signed_in()
    # Nor did it spoil the index: the provider's own request still ends the session.
    frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query())
    assert not alice.signed_in()


def test_a_post_or_a_wrong_method_ends_nothing(app: Flask, idp: LocalProvider) -> None:
    alice = User(app, idp, "alice")
    stranger = app.test_client()
    for method in ("POST", "PUT", "DELETE"):
        answer = stranger.open("/frontchannel-logout", method=method, query_string=alice.frontchannel_query())
        assert answer.status_code == 405
    posted = stranger.post("/frontchannel-logout", data=alice.frontchannel_query())
    assert posted.status_code == 405
    assert alice.signed_in()


def test_entra_sends_sid_only_and_that_is_enough_there(app: Flask, idp: LocalProvider) -> None:
    """Entra ID calls the front-channel URL with ``sid`` and no ``iss``; for an Entra
    authority that ends the session (an Entra sid is unique), for others nothing."""
    alice, bob = User(app, idp, "alice"), User(app, idp, "bob")
    answer = frontchannel_get(app, "/frontchannel-logout", query_string={"sid": alice.claims["sid"]})
    assert answer.status_code == 200
    assert not alice.signed_in()
    assert bob.signed_in()


@pytest.mark.parametrize("kind", ["oidc", "b2c"])
def test_without_iss_other_providers_end_nothing(make_app: Callable[..., Flask], idp: LocalProvider, kind: str) -> None:
    settings = {"authority": None, "oidc_authority": idp.oidc_authority} if kind == "oidc" else b2c_settings(idp)
    app = make_app(**{**settings, "authority": None})
    alice = User(app, idp, "alice")
    missing = frontchannel_get(app, "/frontchannel-logout", query_string={"sid": alice.claims["sid"]})
    assert missing.status_code == 400
    assert alice.signed_in()
    ended = frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query())
    assert ended.status_code == 200
    assert not alice.signed_in()


def test_an_index_entry_naming_another_users_session_cannot_end_it(app: Flask, idp: LocalProvider) -> None:
    """Even an entry that lists Bob's session under Alice's sid (a store written by hand)
    ends only sessions whose own id token names that sid."""
    alice, bob = User(app, idp, "alice"), User(app, idp, "bob")
    cache = app.config["SESSION_CACHELIB"]
    key = frontchannel._key(alice.claims["iss"], alice.claims["sid"], "entra")
    assert cache.get(key) == {frontchannel.ENTRY_KEY: [alice.sid]}
    cache.set(key, {frontchannel.ENTRY_KEY: [bob.sid, alice.sid]})

    frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query())

    assert not alice.signed_in()
    assert bob.signed_in()


def test_sign_out_here_takes_the_session_off_the_index(app: Flask, idp: LocalProvider) -> None:
    cache = app.config["SESSION_CACHELIB"]
    first = User(app, idp, "alice")
    second = User(app, idp, "alice", provider_browser=first.provider_browser)
    key = frontchannel._key(first.claims["iss"], first.claims["sid"], "entra")
    assert cache.get(key) == {frontchannel.ENTRY_KEY: [first.sid, second.sid]}

    first.client.get("/logout", headers=SAME_ORIGIN)
    assert cache.get(key) == {frontchannel.ENTRY_KEY: [second.sid]}
    second.client.get("/logout", headers=SAME_ORIGIN)
    assert cache.get(key) is None


def test_sign_out_with_the_provider_down_still_signs_out_here_and_leaves_the_index(
    make_app: Callable[..., Flask], idp: LocalProvider
) -> None:
    app = make_app(authority=None, oidc_authority=idp.oidc_authority, timeout=1)
    alice = User(app, idp, "alice")
    cache = app.config["SESSION_CACHELIB"]
    key = frontchannel._key(alice.claims["iss"], alice.claims["sid"], "oidc")
    assert cache.get(key) == {frontchannel.ENTRY_KEY: [alice.sid]}
    idp.fault("/.well-known/openid-configuration", delay=3000)  # its end-session endpoint is unknown

    answer = alice.client.get("/logout", headers=SAME_ORIGIN)

    assert answer.status_code == 302 and answer.location == APP_ORIGIN + "/"
    assert not alice.signed_in()
    assert cache.get(key) is None


def test_an_index_entry_is_not_a_session(app: Flask, idp: LocalProvider) -> None:
    """With an empty key prefix a cookie could name an index entry: it reads as an empty session."""
    app.session_interface.key_prefix = ""  # type: ignore[attr-defined]
    alice = User(app, idp, "alice")
    key = frontchannel._key(alice.claims["iss"], alice.claims["sid"], "entra")
    intruder = app.test_client()
    intruder.set_cookie("session", key)
    answer = intruder.get("/whoami", headers={"Accept": "application/json"})
    assert answer.status_code == 401


def test_a_request_in_flight_does_not_write_the_ended_session_back(app: Flask, idp: LocalProvider) -> None:
    alice = User(app, idp, "alice")
    slow: list[TestResponse] = []
    thread = threading.Thread(
        target=lambda: slow.append(alice.client.get("/slow-note", query_string={"seconds": "1.5", "text": "late"}))
    )
    thread.start()
    time.sleep(0.5)  # the slow request has loaded the session
    assert frontchannel_get(app, "/frontchannel-logout", query_string=alice.frontchannel_query()).status_code == 200
    thread.join(10)
    assert slow and slow[0].status_code == 200  # it ran to its end, and wrote the session...
    assert stored_session(app, alice.sid or "") is None  # ...which stayed deleted
    assert not alice.signed_in()


def test_concurrent_sign_ins_of_one_provider_session_are_all_listed(app: Flask, idp: LocalProvider) -> None:
    """Sign-ins finishing at once for one provider session each join its entry (none lost)."""
    first = User(app, idp, "alice")
    clients = [app.test_client() for _ in range(6)]
    callbacks = [
        idp.sign_in(idp.auth_uri_from(c, "/whoami"), login="alice", browser=first.provider_browser) for c in clients
    ]
    barrier = threading.Barrier(len(clients))

    def finish(client: FlaskClient, callback: str) -> None:
        barrier.wait(10)
        assert idp.back_to_app(client, callback).status_code == 302

    threads = [threading.Thread(target=finish, args=pair) for pair in zip(clients, callbacks, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    frontchannel_get(app, "/frontchannel-logout", query_string=first.frontchannel_query())
    assert not first.signed_in()
    for client in clients:
        assert client.get("/whoami", headers={"Accept": "application/json"}).status_code == 401


class MemorySessions(SessionInterface):
    """An app's own server-side session interface that the extension cannot index."""

    class Session(dict[str, Any], SessionMixin):
        pass

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Any) -> MemorySessions.Session:
        sid = request.cookies.get("session", "")
        session = MemorySessions.Session(self.data.get(sid, {}))
        session.sid = sid or f"s{len(self.data) + 1}"  # type: ignore[attr-defined]
        return session

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        if not session:
            return
        self.data[session.sid] = dict(session)
        response.set_cookie("session", session.sid)


def test_a_store_that_cannot_be_indexed_says_so_once_and_the_endpoint_does_nothing(
    idp: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-only-secret"
    app.session_interface = MemorySessions()
    with caplog.at_level(logging.WARNING, logger="identity_flask.frontchannel"):
        Auth(app, **entra_settings(idp))
    warnings = [r.getMessage() for r in caplog.records if r.name == "identity_flask.frontchannel"]
    assert len(warnings) == 1
    assert "Front-channel logout is unavailable with the session interface MemorySessions" in warnings[0]

    client = app.test_client()
    assert idp.sign_in_to_app(client, "/login?next=/", login="alice").status_code == 302
    [data] = app.session_interface.data.values()
    claims = data[USER_KEY]
    caplog.clear()
    answer = frontchannel_get(app, "/frontchannel-logout", query_string={"iss": claims["iss"], "sid": claims["sid"]})
    assert answer.status_code == 200
    assert [data] == list(app.session_interface.data.values())  # still signed in
    assert not [r for r in caplog.records if r.name == "identity_flask.frontchannel"]


# ---- Redis ----


@pytest.fixture
def redis_app(make_app: Callable[..., Flask], redis_server: RedisServer) -> Iterator[Flask]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client})
    client.close()


@pytest.mark.redis
def test_front_channel_logout_with_redis(redis_app: Flask, frontchannel_registered: LocalProvider) -> None:
    idp = frontchannel_registered
    store = redis_app.config["SESSION_REDIS"]
    alice = User(redis_app, idp, "alice")
    second = User(redis_app, idp, "alice", provider_browser=alice.provider_browser)
    bob = User(redis_app, idp, "bob")
    key = frontchannel._key(alice.claims["iss"], alice.claims["sid"], "entra")
    assert msgspec.msgpack.decode(store.get(key)) == {frontchannel.ENTRY_KEY: [alice.sid, second.sid]}
    lifetime = redis_app.permanent_session_lifetime.total_seconds()
    assert 0 < store.ttl(key) <= lifetime  # bounded by the session lifetime

    for attack in ("an unknown sid", "the sid with another issuer", "no sid", "a huge sid"):
        frontchannel_get(redis_app, "/frontchannel-logout", **HOSTILE[attack](alice.frontchannel_query()))
    assert alice.signed_in() and second.signed_in()

    frames = sign_out_at_provider(idp, alice)

    assert len(frames) == 1
    assert not alice.signed_in() and not second.signed_in()
    assert store.get(key) is None
    assert bob.signed_in()


@pytest.mark.redis
def test_a_request_in_flight_does_not_write_the_ended_session_back_to_redis(
    redis_app: Flask, idp: LocalProvider
) -> None:
    alice = User(redis_app, idp, "alice")
    slow: list[TestResponse] = []
    thread = threading.Thread(
        target=lambda: slow.append(alice.client.get("/slow-note", query_string={"seconds": "1.5", "text": "late"}))
    )
    thread.start()
    time.sleep(0.5)
    frontchannel_get(redis_app, "/frontchannel-logout", query_string=alice.frontchannel_query())
    thread.join(10)
    assert slow and slow[0].status_code == 200
    assert redis_app.config["SESSION_REDIS"].get("session:" + (alice.sid or "")) is None
    assert not alice.signed_in()


@pytest.mark.redis
def test_a_full_redis_at_sign_in_is_a_503_and_nothing_is_half_stored(redis_app: Flask, idp: LocalProvider) -> None:
    store = redis_app.config["SESSION_REDIS"]
    client = redis_app.test_client()
    callback = idp.sign_in(idp.auth_uri_from(client, "/whoami"), login="alice")
    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", 1)
    try:
        answer = idp.back_to_app(client, callback)
    finally:
        store.config_set("maxmemory", 0)
    assert answer.status_code == 503
    assert not [k for k in store.keys("identity_frontchannel:*")]


# ---- in a real browser ----


@pytest.mark.browser
def test_the_providers_hidden_frame_ends_the_session_without_the_cookie(
    make_app: Callable[..., Flask], frontchannel_registered: LocalProvider, page: Any
) -> None:
    idp = frontchannel_registered
    app = make_app()
    seen: list[dict[str, Any]] = []

    @app.before_request
    def note_frontchannel_requests() -> None:
        from flask import request

        if request.path == "/frontchannel-logout":
            seen.append({"cookie": "session" in request.cookies, "site": request.headers.get("Sec-Fetch-Site")})

    with LiveServer(app, APP_PORT) as live:
        page.goto(live.url + "/profile")
        sign_in_on_provider_page(page, idp, live.url + "/profile")
        assert page.is_visible("#user")

        # Signed out at the provider from elsewhere: its page frames this app's URL.
        page.goto(idp.entra_authority + "/oauth2/v2.0/logout")
        page.wait_for_url(idp.entra_authority + "/oauth2/v2.0/logout/success**")

        assert seen == [{"cookie": False, "site": "cross-site"}]
        assert [urlsplit(u).path for u in idp.frontchannel_loaded()] == ["/frontchannel-logout"]
        page.goto(live.url + "/")
        assert page.is_visible("#anonymous")
