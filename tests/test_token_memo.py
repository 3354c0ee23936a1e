"""The per-process memo of MSAL's silent answers: bounded, per cache content, dropped at sign-out."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import SignIn
from flask import Flask
from localidp import SHORT_CLIENT_ID, LocalProvider

from identity_flask import client as client_module


def memo_of(app: Flask) -> dict[bytes, dict[str, tuple[dict[str, object], float, float]]]:
    return app.extensions["identity"].client._memo  # type: ignore[no-any-return]


def test_memo_serves_each_user_their_own_token_for_ten_minutes_at_most(app: Flask, sign_in: SignIn) -> None:
    first, second = app.test_client(), app.test_client()
    sign_in(first, "/token", login="memo-one")
    sign_in(second, "/token", login="memo-two")
    tokens = {c.get("/token").get_json()["access_token"] for c in (first, second)}
    assert len(tokens) == 2
    assert {c.get("/token").get_json()["access_token"] for c in (first, second)} == tokens
    entries = [entry for per_cache in memo_of(app).values() for entry in per_cache.values()]
    assert len(entries) == 2
    now = time.time()
    for _token, expires_at, until in entries:
        assert until <= now + client_module.MEMO_SECONDS
        assert until <= expires_at - client_module.MSAL_EXPIRY_MARGIN


def test_after_the_memo_lapses_msal_answers_again(app: Flask, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.test_client()
    sign_in(client, "/token")
    token = client.get("/token").get_json()["access_token"]
    calls = 0
    real = app.extensions["identity"].client._thread_app

    def counting() -> object:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(app.extensions["identity"].client, "_thread_app", counting)
    assert client.get("/token").get_json()["access_token"] == token
    assert calls == 0  # served from the memo
    later = time.time() + client_module.MEMO_SECONDS + 1
    monkeypatch.setattr(client_module.time, "time", lambda: later)
    assert client.get("/token").get_json()["access_token"] == token
    assert calls == 1  # MSAL was asked, and its cache still had the token


def test_sign_out_drops_the_users_memo(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/token")
    client.get("/token")
    assert memo_of(app)
    client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert memo_of(app) == {}


def test_short_lived_tokens_are_never_memoized(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)
    client = app.test_client()
    sign_in(client, "/token")
    client.get("/token")
    assert memo_of(app) == {}


def test_the_memo_is_bounded(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MEMO_ENTRIES", 3)
    identity = app.extensions["identity"].client
    for n in range(5):
        identity._remember(bytes([n]), "scope\naccount", {"access_token": "t", "expires_in": 3600}, time.time())
    assert list(identity._memo) == [bytes([2]), bytes([3]), bytes([4])]
