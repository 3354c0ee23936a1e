"""Step-up for pages against the local provider: a view that needs a recent sign-in
(``max_age``) or an Entra authentication context (``acrs``) sends the user through sign-in
with the right parameters and back to the same page and query string; a provider that
answers without meeting the request gets the user a 403, not a loop."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SignIn, signed_in, unique
from flask import Flask
from flask.testing import FlaskClient
from localidp import IGNORES_MAX_AGE_CLIENT_ID, LocalProvider

from identity_flask import Auth, ConfigurationError
from identity_flask.session_data import USER_KEY

JSON = {"Accept": "application/json"}
AUTHORIZE = "/oauth2/v2.0/authorize"


@pytest.fixture
def step_up_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    def build(**settings: Any) -> Flask:
        app = make_app(**settings)
        auth: Auth = app.extensions["test_auth"]

        @app.route("/recent")
        @auth.login_required(max_age=300)
        def recent(*, context: dict[str, Any]) -> str:
            return f"recent {context['user']['auth_time']}"

        @app.route("/sensitive")
        @auth.login_required(acrs="c1")
        def sensitive(*, context: dict[str, Any]) -> str:
            return "sensitive " + " ".join(context["user"]["acrs"])

        @app.route("/recent-token")
        @auth.login_required(max_age=300, scopes=["User.Read"])
        def recent_token(*, context: dict[str, Any]) -> str:
            return "token" if context["access_token"] else "none"

        return app

    return build


def step_up(client: FlaskClient, sign_in: SignIn, idp: LocalProvider, path: str, login: str) -> tuple[str, str]:
    """Follow ``path`` to the provider, sign in there as ``login``, come back.

    :return: the authorization request's URL and where the callback sent the browser.
    """
    auth_uri = sign_in.start(client, path)
    back = sign_in.finish(client, idp.sign_in(auth_uri, login=login))
    assert back.status_code == 302
    return auth_uri, back.headers["Location"]


def test_max_age_signs_the_user_in_again_and_back_to_the_same_page_and_query(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    first = client.get("/recent?x=1&y=two%20words")
    assert first.status_code == 302  # no auth_time yet: a sign-in that asked for none
    auth_uri, back = step_up(client, sign_in, idp, "/recent?x=1&y=two%20words", "alice")
    assert parse_qs(urlsplit(auth_uri).query)["max_age"] == ["300"]
    assert back == "/recent?x=1&y=two%20words"
    page = client.get(back)
    assert page.status_code == 200
    assert abs(int(page.text.split()[1]) - time.time()) < 30  # the provider's auth_time, just now


def test_a_sign_in_older_than_max_age_steps_up_again(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    step_up(client, sign_in, idp, "/recent", "alice")
    assert client.get("/recent").status_code == 200
    with client.session_transaction() as session:
        session[USER_KEY] = {**session[USER_KEY], "auth_time": int(time.time()) - 3600}  # an hour has passed
    assert client.get("/recent").status_code == 302
    step_up(client, sign_in, idp, "/recent", "alice")
    assert client.get("/recent").status_code == 200


def test_a_provider_that_ignores_max_age_gets_a_403_not_a_loop(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    client = signed_in(step_up_app(client_id=IGNORES_MAX_AGE_CLIENT_ID), sign_in, "alice")
    idp.log(clear=True)
    step_up(client, sign_in, idp, "/recent", "alice")
    refused = client.get("/recent")
    assert refused.status_code == 403
    assert "recent or stronger sign-in" in refused.text
    assert "auth_time" in caplog.text  # the log says what the provider must send
    assert sum(1 for entry in idp.log() if entry["path"].endswith(AUTHORIZE)) == 1


def test_a_step_up_left_unfinished_is_asked_again_later(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    assert client.get("/recent").status_code == 302  # the user walks away from the sign-in page
    assert client.get("/recent").status_code == 302  # and comes back: asked again, not refused


def test_an_authentication_context_round_trip(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    login = unique("stepup")
    client = signed_in(step_up_app(), sign_in, login)
    auth_uri, back = step_up(client, sign_in, idp, "/sensitive?doc=7", login)
    claims = json.loads(parse_qs(urlsplit(auth_uri).query)["claims"][0])
    assert claims == {"id_token": {"acrs": {"essential": True, "value": "c1"}}}
    assert back == "/sensitive?doc=7"
    assert client.get(back).text == "sensitive c1"


def test_an_authentication_context_the_provider_does_not_meet_is_a_403_not_a_loop(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    login = unique("noacrs")
    client = signed_in(step_up_app(), sign_in, login)
    step_up(client, sign_in, idp, "/sensitive", login)
    assert client.get("/sensitive").status_code == 403


def test_a_step_up_keeps_the_views_scopes(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    auth_uri, back = step_up(client, sign_in, idp, "/recent-token", "alice")
    assert "User.Read" in parse_qs(urlsplit(auth_uri).query)["scope"][0]
    assert client.get(back).text == "token"


def test_several_contexts_round_trip_each_in_turn(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app()
    auth: Auth = app.extensions["test_auth"]

    @app.route("/both")
    @auth.login_required(acrs=["c1", "c2"])
    def both(*, context: dict[str, Any]) -> str:
        return "both " + " ".join(sorted(context["user"]["acrs"]))

    login = unique("stepup")
    client = signed_in(app, sign_in, login)
    step_up(client, sign_in, idp, "/both", login)  # c1
    step_up(client, sign_in, idp, "/both", login)  # then c2
    assert client.get("/both").text == "both c1 c2"


def test_another_sign_in_after_an_abandoned_step_up_is_not_taken_for_a_loop(
    step_up_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    sign_in.start(client, "/recent")  # a step-up sign-in is started, and abandoned at the provider
    assert sign_in(client, "/login", login="alice").status_code == 302  # a plain sign-in instead
    assert client.get("/recent").status_code == 302  # asked again, not refused


@pytest.mark.parametrize("auth_time", [float("nan"), float("inf"), 10**12, "recent", True])
def test_an_auth_time_that_is_not_a_past_moment_is_not_recent(
    step_up_app: Callable[..., Flask], sign_in: SignIn, auth_time: Any
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    with client.session_transaction() as session:
        session[USER_KEY] = {**session[USER_KEY], "auth_time": auth_time}
    assert client.get("/recent").status_code == 302


def test_a_caller_that_does_not_want_html_gets_a_401_to_step_up(
    step_up_app: Callable[..., Flask], sign_in: SignIn
) -> None:
    client = signed_in(step_up_app(), sign_in, "alice")
    answer = client.get("/recent", headers=JSON)
    assert answer.status_code == 401
    assert answer.json["error"] == "interaction_required"


def test_a_planted_claims_step_up_value_does_not_let_a_user_through(
    step_up_app: Callable[..., Flask], sign_in: SignIn
) -> None:
    """``acrs`` as a string, a number or a list of other values is not ``c1``."""
    client = signed_in(step_up_app(), sign_in, unique("stepup"))
    for value in ("c10", ["c10", "c11"], 1, {"c1": True}, "c"):
        with client.session_transaction() as session:
            session[USER_KEY] = {**session[USER_KEY], "acrs": value}
        assert client.get("/sensitive").status_code == 302


def test_several_contexts_are_asked_one_at_a_time(make_app: Callable[..., Flask]) -> None:
    """A claims request naming several values asks for any one of them (OpenID Connect Core 5.5.1)."""
    app = make_app()
    auth: Auth = app.extensions["test_auth"]

    @app.route("/two")
    @auth.login_required(acrs=["c2", "c1"])
    def two(*, context: dict[str, Any]) -> str:
        return "two"

    client = app.test_client()
    with client.session_transaction() as session:
        session[USER_KEY] = {"sub": "x", "acrs": ["c1"]}
    login = parse_qs(urlsplit(client.get("/two").headers["Location"]).query)
    claims = json.loads(base64.b64decode(login["claims"][0]))
    assert claims == {"id_token": {"acrs": {"essential": True, "value": "c2"}}}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_age": -1}, "max_age"),
        ({"max_age": "soon"}, "max_age"),
        ({"max_age": True}, "max_age"),
        ({"acrs": "mfa"}, "authentication context"),
        ({"acrs": ["c1", "c100"]}, "authentication context"),
        ({"acrs": "c0"}, "authentication context"),
    ],
)
def test_step_up_arguments_are_checked_when_the_view_is_decorated(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Auth().login_required(**arguments)
