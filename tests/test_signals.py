"""Signals, the unauthorized handler and ``current_user``, against the local provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import blinker
import pytest
from blinker import Signal
from conftest import SignIn
from flask import Flask, render_template_string
from localidp import LocalProvider, query_of

import identity_flask
from identity_flask import (
    IdentityError,
    SignInError,
    current_user,
    sign_in_failed,
    signed_in,
    signed_out,
    unauthorized,
)


@contextmanager
def received(signal: Signal, app: Flask) -> Iterator[list[dict[str, Any]]]:
    """Collect what ``signal`` sends for ``app``, as keyword arguments plus the sender."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        calls.append({"sender": sender, **kwargs})

    with signal.connected_to(receiver, app):
        yield calls


def test_signed_in_is_sent_with_the_users_claims(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    with received(signed_in, app) as calls:
        sign_in(client, "/profile", login="bob")
    assert len(calls) == 1
    assert calls[0]["sender"] is app
    assert calls[0]["user"]["sub"] == "bob"
    assert calls[0]["user"]["name"] == "Bob"


def test_signal_for_another_app_is_not_received(make_app: Callable[..., Flask], sign_in: SignIn) -> None:
    app, other = make_app(), make_app()
    with received(signed_in, other) as calls, received(signed_in, app) as sent:
        assert sign_in(app.test_client(), "/profile").status_code == 302
    assert len(sent) == 1  # the signal was sent, for the app signed in to
    assert calls == []


def test_signed_out_is_sent_with_the_user_who_left(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/profile", login="carol")
    with received(signed_out, app) as calls:
        assert client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 302
    assert [c["user"]["sub"] for c in calls] == ["carol"]


def test_signed_out_without_a_user_sends_none(app: Flask) -> None:
    with received(signed_out, app) as calls:
        app.test_client().get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert [c["user"] for c in calls] == [None]


def test_sign_in_failed_on_a_forged_state(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    sign_in.start(client, "/profile")
    with received(sign_in_failed, app) as calls:
        response = client.get("/getAToken?code=stolen&state=forged")
    assert response.status_code == 400
    assert len(calls) == 1
    error = calls[0]["error"]
    assert isinstance(error, SignInError) and isinstance(error, IdentityError)
    assert error.error == "invalid_state"


def test_sign_in_failed_when_the_user_cancels(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    auth_uri = sign_in.start(client, "/profile")
    state = query_of(auth_uri)["state"]
    with received(sign_in_failed, app) as calls:
        response = client.get(f"/getAToken?error=access_denied&state={state}")
    assert response.status_code == 403
    assert [c["error"].error for c in calls] == ["access_denied"]


def test_unauthorized_is_sent_for_a_signed_out_request(app: Flask) -> None:
    client = app.test_client()
    with received(unauthorized, app) as calls:
        assert client.get("/profile").status_code == 302
        assert client.get("/token", headers={"Accept": "application/json"}).status_code == 401
    assert [(c["reason"], c["scopes"]) for c in calls] == [("signed_out", []), ("signed_out", ["User.Read"])]


def test_unauthorized_reason_is_consent_required_for_a_missing_scope(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/profile", login="consent-signals")  # never consented to Files.Read
    with received(unauthorized, app) as calls:
        client.get("/files")
    assert [(c["reason"], c["scopes"]) for c in calls] == [("consent_required", ["Files.Read"])]


def test_custom_unauthorized_handler_answers_refused_requests(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    auth = app.extensions["test_auth"]
    seen: list[dict[str, Any]] = []

    @auth.unauthorized_handler
    def please_sign_in(*, reason: str, scopes: list[str]) -> tuple[str, int]:
        seen.append({"reason": reason, "scopes": scopes})
        return render_template_string("<p>Please <a href='{{ url_for('identity.login') }}'>sign in</a></p>"), 401

    assert please_sign_in.__name__ == "please_sign_in"  # the decorator returns the function
    client = app.test_client()
    with received(unauthorized, app) as calls:
        response = client.get("/graph")
    assert response.status_code == 401
    assert "Please <a href='/login'>sign in</a>" in response.get_data(as_text=True)
    assert seen == [{"reason": "signed_out", "scopes": ["User.Read"]}]
    assert len(calls) == 1  # the signal is still sent before the handler runs


def test_current_user_in_templates_and_undecorated_views(make_app: Callable[..., Flask], sign_in: SignIn) -> None:
    app = make_app()

    @app.route("/hello")
    def hello() -> str:
        return render_template_string(
            "{% if current_user %}Hello {{ current_user['name'] }}{% else %}Hello stranger{% endif %}",
            current_user=current_user,
        )

    @app.route("/who")
    def who() -> dict[str, Any]:
        return {"sub": current_user["sub"] if current_user else None}

    client = app.test_client()
    assert client.get("/hello").get_data(as_text=True) == "Hello stranger"
    assert client.get("/who").get_json() == {"sub": None}
    sign_in(client, "/profile", login="dave")
    assert client.get("/hello").get_data(as_text=True) == "Hello Dave"
    assert client.get("/who").get_json() == {"sub": "dave"}
    client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert client.get("/who").get_json() == {"sub": None}


def test_current_user_is_none_outside_a_request_with_a_user(app: Flask) -> None:
    with app.test_request_context():
        assert current_user is not None  # a proxy object
        assert not current_user
        assert current_user == None  # noqa: E711 - the proxy compares as its target


SIGNALS = [signed_in, signed_out, sign_in_failed, unauthorized]


def test_these_are_all_the_signals_and_each_is_exported() -> None:
    defined = [value for value in vars(identity_flask.signals).values() if isinstance(value, Signal)]
    assert defined == SIGNALS
    exported = {name: getattr(identity_flask, name) for name in identity_flask.__all__}
    assert all(any(signal is value for value in exported.values()) for signal in SIGNALS)


@pytest.mark.parametrize("signal", SIGNALS, ids=[s.name for s in SIGNALS])
def test_signals_live_in_their_own_namespace(signal: Signal) -> None:
    assert signal.name.startswith("identity-")
    # blinker's process-wide namespace holds another signal of that name, which any
    # library may use: the extension's is not it.
    assert blinker.signal(signal.name) is not signal


def test_a_signal_of_the_same_name_in_blinkers_own_namespace_hears_nothing(app: Flask, sign_in: SignIn) -> None:
    heard: list[dict[str, Any]] = []

    def stranger(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    with blinker.signal(signed_in.name).connected_to(stranger), received(signed_in, app) as calls:
        assert sign_in(app.test_client(), "/profile").status_code == 302
    assert len(calls) == 1 and heard == []
