"""Claims challenges: a further API asks for more (Entra's continuous access evaluation,
conditional access); the page's user signs in again asking for it, an API's caller is told.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SignIn
from flask import Flask
from localidp import API_CLIENT_ID, LocalProvider
from testapp import CAE_CHALLENGE, CAE_CLAIMS

from identity_flask import ApiAuth, ClaimsChallenge

JSON = {"Accept": "application/json"}


def claims_in(challenge: str) -> Any:
    """The claims request a ``WWW-Authenticate`` challenge carries, decoded."""
    return json.loads(base64.b64decode(challenge.split('claims="')[1].split('"')[0]))


def test_a_page_sends_the_user_through_sign_in_with_the_claims_and_back(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    challenged = client.get("/needs-claims?tab=2")
    assert challenged.status_code == 302
    login = urlsplit(challenged.location)
    query = parse_qs(login.query)
    assert login.path == "/login" and query["next"] == ["/needs-claims?tab=2"] and query["scopes"] == ["User.Read"]
    auth_uri = sign_in.start(client, challenged.location)
    sent = parse_qs(urlsplit(auth_uri).query)
    assert json.loads(sent["claims"][0]) == json.loads(CAE_CLAIMS)  # what the provider is asked for
    back = sign_in.finish(client, idp.sign_in(auth_uri))
    assert back.status_code == 302 and back.location == "/needs-claims?tab=2"  # the same page and query
    answer = client.get(back.location)
    assert answer.status_code == 200 and answer.get_json()["sub"] == "alice"


def test_a_caller_that_wants_json_gets_the_challenge(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    response = client.get("/needs-claims", headers=JSON)
    assert response.status_code == 401 and response.get_json()["error"] == "insufficient_claims"
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_claims"' in challenge
    assert claims_in(challenge) == json.loads(CAE_CLAIMS)


@pytest.mark.parametrize(
    "claims",
    ["not-base64!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{" * 5000).decode(), ""],
    ids=["garbage", "not-an-object", "oversized", "empty"],
)
def test_the_login_view_refuses_claims_that_are_not_a_json_object(app: Flask, claims: str) -> None:
    response = app.test_client().get("/login", query_string={"claims": claims})
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [
        "",
        'Bearer error="invalid_token"',
        'Bearer error="insufficient_claims"',
        'Bearer error="insufficient_claims", claims="bm90IGpzb24="',
    ],
)
def test_from_header_finds_only_real_claims_challenges(header: str) -> None:
    assert ClaimsChallenge.from_header(header) is None
    assert ClaimsChallenge.from_header(CAE_CHALLENGE) is not None


def test_an_api_passes_the_challenge_on_to_its_caller(provider: LocalProvider) -> None:
    app = Flask(__name__)
    api_auth = ApiAuth(app, client_id=API_CLIENT_ID, authority=provider.entra_authority)

    @app.route("/api/report")
    @api_auth.authorization_required(expected_scopes=["Secret"])
    def report(*, context: dict[str, Any]) -> Any:
        raise ClaimsChallenge.from_header(CAE_CHALLENGE) or AssertionError("not a challenge")

    token = provider.user_token("claims-caller", [f"api://{API_CLIENT_ID}/Secret"])
    response = app.test_client().get("/api/report", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.is_json
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="api://{API_CLIENT_ID}"') and 'error="insufficient_claims"' in challenge
    assert claims_in(challenge) == json.loads(CAE_CLAIMS)


def test_a_challenge_that_repeats_after_its_sign_in_is_a_403_not_a_loop(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    first = client.get("/needs-claims")
    assert first.status_code == 302
    sign_in.finish(client, idp.sign_in(sign_in.start(client, first.location)))
    with client.session_transaction() as session:
        session["challenged"] = False  # the further API asks again, for the same claims
    again = client.get("/needs-claims")
    assert again.status_code == 403
    assert "Traceback" not in again.get_data(as_text=True)


@pytest.mark.parametrize(
    "claims",
    [
        base64.b64encode(b"[" * 5000).decode(),
        base64.b64encode(b'{"a":' * 2000).decode(),
        base64.b64encode(json.dumps({"id_token": {"x": {"value": "v" * 1900}}}).encode()).decode(),
    ],
    ids=["deeply-nested-list", "deeply-nested-object", "near-the-limit"],
)
def test_hostile_claims_never_break_the_login_view(app: Flask, claims: str) -> None:
    response = app.test_client().get("/login", query_string={"claims": claims, "next": "/" + "p" * 1500})
    assert response.status_code in (302, 400)
    assert "Traceback" not in response.get_data(as_text=True)
    for cookie in response.headers.getlist("Set-Cookie"):
        assert len(cookie) <= 4096
    assert ClaimsChallenge.from_header(f'Bearer error="insufficient_claims", claims="{claims}"') is None or (
        len(base64.b64decode(claims)) <= 2048
    )
