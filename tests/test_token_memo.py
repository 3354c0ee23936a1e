"""The per-process memo of MSAL's silent answers: bounded, per cache content, never past
MSAL's own expiry margin, dropped at sign-out.

The memo is seen the way it matters: whether a page view asks MSAL at all. The
``msal_asked`` spy records each silent token request the app makes to MSAL and
passes it on; MSAL and the provider answer as usual. Time is moved with a fake
``time.time`` (``identity_flask.client`` reads no replaceable clock of its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msal
import pytest
from conftest import SignIn, session_cookie
from flask import Flask
from flask.testing import FlaskClient
from localidp import MEDIUM_CLIENT_ID, MEDIUM_TOKEN_SECONDS, SHORT_CLIENT_ID

from identity_flask import client as client_module


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


def token(client: FlaskClient, login: str = "alice") -> str:
    response = client.get("/token")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["sub"] == login
    return str(body["access_token"])


def test_memo_serves_each_user_their_own_token_without_asking_msal(
    app: Flask, sign_in: SignIn, msal_asked: list[list[str]]
) -> None:
    first, second = app.test_client(), app.test_client()
    assert sign_in(first, "/token", login="memo-one").status_code == 302
    assert sign_in(second, "/token", login="memo-two").status_code == 302
    tokens = [token(first, "memo-one"), token(second, "memo-two")]
    assert len(set(tokens)) == 2
    assert len(msal_asked) == 2  # once per user
    for _ in range(3):
        assert [token(first, "memo-one"), token(second, "memo-two")] == tokens
    assert len(msal_asked) == 2  # every later view was served from the memo


def test_after_ten_minutes_msal_answers_again(
    app: Flask, sign_in: SignIn, msal_asked: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    remembered_at = time.time()
    first = token(client)
    assert len(msal_asked) == 1
    at(monkeypatch, remembered_at + 600 - 5)
    assert token(client) == first
    assert len(msal_asked) == 1  # still served from the memo
    at(monkeypatch, remembered_at + 600 + 1)
    assert token(client) == first  # MSAL was asked, and its cache still had the token
    assert len(msal_asked) == 2


def test_a_token_is_not_memoized_past_msals_own_expiry_margin(
    make_app: Callable[..., Flask], sign_in: SignIn, msal_asked: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(client_id=MEDIUM_CLIENT_ID)  # 400-second tokens: MSAL refreshes them after 100 seconds
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    issued_at = time.time()
    first = token(client)
    usable = MEDIUM_TOKEN_SECONDS - 300  # MSAL refreshes a token with less than 5 minutes left
    assert usable < 600  # sooner than the memo's own ten minutes
    at(monkeypatch, issued_at + usable - 10)
    assert token(client) == first
    assert len(msal_asked) == 1  # from the memo, as MSAL itself would still serve it
    at(monkeypatch, issued_at + usable + 10)
    assert token(client) != first  # MSAL was asked, and refreshed it at the provider
    assert len(msal_asked) == 2


def test_sign_out_drops_the_users_memo(app: Flask, sign_in: SignIn, msal_asked: list[list[str]]) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    first = token(client)
    assert token(client) == first and len(msal_asked) == 1  # remembered
    sid = session_cookie(client)
    assert sid is not None
    store = app.config["SESSION_CACHELIB"]
    key = app.session_interface.key_prefix + sid  # type: ignore[attr-defined]
    record = store.get(key)
    assert client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
    assert not store.has(key)

    # The very same record put back, as a restored backup of the store would: the same token
    # cache, which the memo would still answer for had sign-out not dropped it.
    store.set(key, record)
    client.set_cookie("session", sid)
    assert token(client) == first
    assert len(msal_asked) == 2


def test_short_lived_tokens_are_never_memoized(
    make_app: Callable[..., Flask], sign_in: SignIn, msal_asked: list[list[str]]
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)  # 5-second tokens, inside MSAL's margin from the start
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    tokens = [token(client) for _ in range(3)]
    assert len(set(tokens)) == 3  # refreshed for every view
    assert len(msal_asked) == 3  # and MSAL asked for every view


def test_the_memo_is_bounded(
    app: Flask, sign_in: SignIn, msal_asked: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MEMO_ENTRIES", 3)
    users = {f"bounded{n}": app.test_client() for n in range(4)}
    tokens = {}
    for login, client in users.items():
        assert sign_in(client, "/token", login=login).status_code == 302
        tokens[login] = token(client, login)
    assert len(msal_asked) == 4
    for login in ("bounded3", "bounded2", "bounded1"):  # the three newest are remembered
        assert token(users[login], login) == tokens[login]
    assert len(msal_asked) == 4
    assert token(users["bounded0"], "bounded0") == tokens["bounded0"]  # the oldest was let go
    assert len(msal_asked) == 5
