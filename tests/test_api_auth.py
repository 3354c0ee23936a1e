"""ApiAuth: a Flask web API that accepts Entra bearer access tokens, against the local provider.

Tokens come from the provider: real ones through its flows (a user's, through the
authorization code flow; an app's, through client credentials; on-behalf-of), and,
for what a real provider never issues (expired, another audience, another issuer,
a missing claim), minted by its test-only ``/__mint`` endpoint with its own signing
key. Forged tokens (another key, ``none``, HMAC) are made here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify
from flask.testing import FlaskClient
from localidp import (
    API_CLIENT_ID,
    API_V1_CLIENT_ID,
    CLIENT_ID,
    DAEMON_CLIENT_ID,
    DAEMON_NO_ROLES_CLIENT_ID,
    DAEMON_NO_ROLES_SECRET,
    DAEMON_SECRET,
    DOWNSTREAM_API_CLIENT_ID,
    MIDDLE_API_CLIENT_ID,
    MIDDLE_API_SECRET,
    TENANT_ID,
    LocalProvider,
)

from identity_flask import ApiAuth, Auth, ConfigurationError, bearer

OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
API_URI = f"api://{API_CLIENT_ID}"


# --- the API under test -------------------------------------------------------------------------


def create_api(provider: LocalProvider, **settings: Any) -> Flask:
    """An API with a view per kind of check; ``settings`` go to ApiAuth."""
    app = Flask(__name__)
    options: dict[str, Any] = {"client_id": API_CLIENT_ID, "authority": provider.entra_authority, **settings}
    api_auth = ApiAuth(app, **options)
    app.extensions["test_api_auth"] = api_auth

    @app.route("/api/secret", methods=["GET", "OPTIONS"])
    @api_auth.authorization_required(expected_scopes={"Secret": f"{API_URI}/Secret"})
    def secret(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["claims"]["sub"], scopes=context["scopes"], app_only=context["app_only"])

    @app.route("/api/todo")
    @api_auth.authorization_required(expected_scopes=["Todo.Read"])
    def todo(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["claims"]["sub"])

    @app.route("/api/jobs")
    @api_auth.authorization_required(roles=["Jobs.Run"])
    def jobs(*, context: dict[str, Any]) -> Any:
        return jsonify(roles=context["roles"], app_only=context["app_only"])

    @app.route("/api/either")
    @api_auth.authorization_required(expected_scopes=["Secret"], roles=["Jobs.Run"])
    def either(*, context: dict[str, Any]) -> Any:
        return jsonify(app_only=context["app_only"])

    @app.route("/api/both-scopes")
    @api_auth.authorization_required(expected_scopes=["Secret", "Todo.Read"])
    def both_scopes(*, context: dict[str, Any]) -> Any:
        return jsonify(scopes=context["scopes"])

    @app.route("/api/any")
    @api_auth.authorization_required
    def any_token(*, context: dict[str, Any]) -> Any:
        return jsonify(oid=context["claims"].get("oid"))

    return app


@pytest.fixture
def api(provider: LocalProvider) -> Flask:
    return create_api(provider)


@pytest.fixture(scope="module")
def issuer(provider: LocalProvider) -> str:
    document = requests.get(
        provider.entra_authority + "/v2.0/.well-known/openid-configuration", verify=str(provider.ca_bundle), timeout=10
    ).json()
    return str(document["issuer"])


def claims_for(issuer: str, **over: Any) -> dict[str, Any]:
    """The claims of a valid v2 delegated token for the API, with ``over`` on top (None removes)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": API_CLIENT_ID,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": TENANT_ID,
        "oid": str(uuid.uuid4()),
        "sub": "minted-user",
        "scp": "Secret",
        "azp": CLIENT_ID,
        "ver": "2.0",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def call(client: FlaskClient, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(path, headers=headers)


def refused(response: Any, status: int = 401, error: str | None = "invalid_token", realm: str = API_URI) -> str:
    """Check a refusal: status, JSON body, RFC 6750 challenge; return the description."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json, response.get_data(as_text=True)[:300]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm}"'), challenge
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge and response.get_json()["error"] == error
    return str(response.get_json()["error_description"])


# --- accepted tokens ----------------------------------------------------------------------------


def test_a_users_token_from_the_provider_is_accepted(api: Flask, provider: LocalProvider) -> None:
    token = provider.user_token("api-user", [f"{API_URI}/Secret"])
    response = call(api.test_client(), "/api/secret", token)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"sub": "api-user", "scopes": ["Secret"], "app_only": False}


def test_a_v1_token_is_accepted_with_the_app_id_uri_as_audience(provider: LocalProvider) -> None:
    app = create_api(provider, client_id=API_V1_CLIENT_ID)
    token = provider.user_token("api-v1-user", [f"api://{API_V1_CLIENT_ID}/Secret"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/" and claims["aud"] == f"api://{API_V1_CLIENT_ID}"
    response = call(app.test_client(), "/api/any", token)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_an_app_token_with_the_role_is_accepted_and_without_it_refused(api: Flask, provider: LocalProvider) -> None:
    client = api.test_client()
    with_role = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"{API_URI}/.default")["access_token"]
    response = call(client, "/api/jobs", with_role)
    assert response.status_code == 200 and response.get_json() == {"roles": ["Jobs.Run"], "app_only": True}
    assert call(client, "/api/either", with_role).status_code == 200
    refused(call(client, "/api/secret", with_role), 403, "insufficient_scope")  # an app holds no delegated scope
    without = provider.app_token(DAEMON_NO_ROLES_CLIENT_ID, DAEMON_NO_ROLES_SECRET, f"{API_URI}/.default")
    refused(call(client, "/api/jobs", without["access_token"]), 403, "insufficient_scope")


def test_scopes_are_read_from_scp_and_every_listed_one_is_needed(
    api: Flask, issuer: str, provider: LocalProvider
) -> None:
    client = api.test_client()
    assert call(client, "/api/secret", provider.mint(claims_for(issuer, scp="Todo.Read Secret"))).status_code == 200
    assert call(client, "/api/todo", provider.mint(claims_for(issuer, scp="Todo.Read"))).status_code == 200
    both = provider.mint(claims_for(issuer, scp="Todo.Read Secret"))
    assert call(client, "/api/both-scopes", both).status_code == 200
    refused(
        call(client, "/api/both-scopes", provider.mint(claims_for(issuer, scp="Secret"))), 403, "insufficient_scope"
    )
    response = call(client, "/api/secret", provider.mint(claims_for(issuer, scp="Todo.Read")))
    refused(response, 403, "insufficient_scope")
    assert f'scope="{API_URI}/Secret"' in response.headers["WWW-Authenticate"]  # the full scope to request
    response = call(client, "/api/todo", provider.mint(claims_for(issuer, scp="Secret")))
    assert f'scope="{API_URI}/Todo.Read"' in response.headers["WWW-Authenticate"]
    refused(call(client, "/api/jobs", provider.mint(claims_for(issuer))), 403, "insufficient_scope")
    user_with_role = provider.mint(claims_for(issuer, scp="Other", roles=["Jobs.Run"]))
    assert call(client, "/api/jobs", user_with_role).status_code == 200  # roles alone: users' app roles count
    refused(call(client, "/api/either", user_with_role), 403, "insufficient_scope")  # a user needs the scope
    not_a_list = provider.mint(claims_for(issuer, scp="Other", roles="Jobs.Run"))
    refused(call(client, "/api/jobs", not_a_list), 403, "insufficient_scope")


# --- issuer, audience, times, callers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "over", "reason"),
    [
        ("expired", {"exp": -120}, "expired"),
        ("not-yet", {"nbf": +120}, "not valid yet"),
        ("issued-in-the-future", {"iat": +120}, "not valid yet"),
        ("no-exp", {"exp": None}, "'exp'"),
        ("no-nbf", {"nbf": None}, "'nbf'"),
        ("no-iat", {"iat": None}, "'iat'"),
        ("other-audience", {"aud": DOWNSTREAM_API_CLIENT_ID}, "not for this API"),
        ("no-audience", {"aud": None}, "'aud'"),
        ("other-issuer", {"iss": "https://login.example.org/x/v2.0"}, "not issued by"),
        ("v1-issuer-other-tenant", {"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}, "not issued by"),
        ("other-tenant-same-issuer-shape", {"iss": "__other_tenant__", "tid": OTHER_TENANT}, "not issued by"),
    ],
)
def test_tokens_that_do_not_hold_are_401(
    api: Flask, issuer: str, provider: LocalProvider, case: str, over: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    claims = claims_for(
        issuer, **{k: (now + v if k in ("exp", "nbf", "iat") and v is not None else v) for k, v in over.items()}
    )
    if claims.get("iss") == "__other_tenant__":
        claims["iss"] = issuer.replace(TENANT_ID, OTHER_TENANT)
    assert reason in refused(call(api.test_client(), "/api/secret", provider.mint(claims))), case


def test_times_within_the_leeway_hold(api: Flask, issuer: str, provider: LocalProvider) -> None:
    now = int(time.time())
    token = provider.mint(claims_for(issuer, exp=now - 30, nbf=now + 30, iat=now + 30))  # leeway 60 s
    assert call(api.test_client(), "/api/secret", token).status_code == 200
    strict = create_api(provider, clock_leeway=0)
    refused(call(strict.test_client(), "/api/secret", token))


def test_v1_issuer_of_the_same_tenant_and_app_id_uri_audience(api: Flask, issuer: str, provider: LocalProvider) -> None:
    token = provider.mint(claims_for(issuer, iss=f"https://sts.windows.net/{TENANT_ID}/", aud=API_URI))
    assert call(api.test_client(), "/api/secret", token).status_code == 200


def test_a_configured_app_id_uri_replaces_the_default(issuer: str, provider: LocalProvider) -> None:
    app = create_api(provider, app_id_uri="https://api.contoso.example/orders")
    client = app.test_client()
    assert (
        call(
            client, "/api/any", provider.mint(claims_for(issuer, aud="https://api.contoso.example/orders"))
        ).status_code
        == 200
    )
    assert call(client, "/api/any", provider.mint(claims_for(issuer, aud=API_CLIENT_ID))).status_code == 200
    assert call(client, "/api/any", provider.mint(claims_for(issuer, aud=API_URI))).status_code == 401


def test_multi_tenant_authority_fills_in_the_tenant_and_honours_the_allowed_list(
    issuer: str, provider: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    other = provider.mint(claims_for(issuer, iss=issuer.replace(TENANT_ID, OTHER_TENANT), tid=OTHER_TENANT))
    ours = provider.mint(claims_for(issuer))
    with caplog.at_level(logging.WARNING, "identity_flask"):
        open_api = create_api(provider, authority=provider.organizations_authority)
    assert any("allowed_tenants" in r.getMessage() for r in caplog.records)
    assert call(open_api.test_client(), "/api/any", other).status_code == 200
    closed = create_api(provider, authority=provider.organizations_authority, allowed_tenants=[TENANT_ID])
    assert call(closed.test_client(), "/api/any", ours).status_code == 200
    assert "tenant" in refused(call(closed.test_client(), "/api/any", other))
    no_tid = provider.mint(claims_for(issuer, tid=None))
    assert "no tenant" in refused(call(closed.test_client(), "/api/any", no_tid))


def test_allowed_client_apps_are_checked_by_azp_or_appid(issuer: str, provider: LocalProvider) -> None:
    app = create_api(provider, allowed_client_apps=[CLIENT_ID])
    client = app.test_client()
    assert call(client, "/api/any", provider.mint(claims_for(issuer))).status_code == 200
    v1 = claims_for(issuer, azp=None, appid=CLIENT_ID, iss=f"https://sts.windows.net/{TENANT_ID}/")
    assert call(client, "/api/any", provider.mint(v1)).status_code == 200
    refused(call(client, "/api/any", provider.mint(claims_for(issuer, azp="another-app"))), 403, "unauthorized_client")
    no_caller = provider.mint(claims_for(issuer, azp=None))
    assert "not an access token" in refused(call(client, "/api/any", no_caller))


def test_an_id_token_for_the_same_client_id_is_not_an_access_token(issuer: str, provider: LocalProvider) -> None:
    """Pages and an API sharing one registration: the pages' id tokens carry the same
    audience and issuer (and, from Entra, nbf), but are no access tokens."""
    app = create_api(provider, client_id=CLIENT_ID)
    now = int(time.time())
    id_token = {
        "aud": CLIENT_ID, "iss": issuer, "iat": now, "nbf": now, "exp": now + 3600, "sub": "user-sub",
        "oid": str(uuid.uuid4()), "tid": TENANT_ID, "ver": "2.0", "roles": ["Jobs.Run"],
    }  # fmt: skip
    for shape in ({**id_token, "nonce": "n"}, id_token, {**id_token, "nonce": "n", "azp": CLIENT_ID}):
        for path in ("/api/jobs", "/api/either", "/api/any"):
            answer = call(app.test_client(), path, provider.mint(shape))
            assert "not an access token" in refused(answer, realm=f"api://{CLIENT_ID}"), path


# --- signatures and keys ------------------------------------------------------------------------


def forged(claims: dict[str, Any], kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def hmac_signed(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """A token signed HS256 with ``secret`` (PyJWT refuses to sign with key material that looks public)."""

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = (
        part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + part(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def jwks_fetches(provider: LocalProvider) -> int:
    return sum(1 for e in provider.log() if e["method"] == "GET" and e["path"].endswith("/keys"))


def test_forged_signatures_are_401(api: Flask, issuer: str, provider: LocalProvider) -> None:
    client = api.test_client()
    claims = claims_for(issuer)
    genuine = provider.mint(claims)
    kid = jwt.get_unverified_header(genuine)["kid"]
    assert call(client, "/api/secret", genuine).status_code == 200
    header, payload, signature = genuine.split(".")
    swapped = base64.urlsafe_b64encode(json.dumps({**claims, "scp": "Secret Admin"}).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid}).encode()).rstrip(b"=").decode()
    keys = requests.get(provider.jwks_uri, verify=str(provider.ca_bundle), timeout=10).json()["keys"]
    public = next(k for k in keys if k["kid"] == kid)
    cases = {
        "another key, same kid": forged(claims, kid),
        "alg none": f"{none_header}.{payload}.",
        "HMAC with the public key": hmac_signed(claims, json.dumps(public).encode(), kid),
        "HMAC with the modulus": hmac_signed(claims, public["n"].encode(), kid),
        "payload swapped": f"{header}.{swapped}.{signature}",
    }
    for case, token in cases.items():
        assert call(client, "/api/secret", token).status_code == 401, case
        refused(call(client, "/api/secret", token))


def test_a_key_rotated_in_works_at_once_and_old_tokens_still_hold(
    api: Flask, issuer: str, provider: LocalProvider
) -> None:
    client = api.test_client()
    before = provider.mint(claims_for(issuer))
    assert call(client, "/api/secret", before).status_code == 200
    provider.log(clear=True)
    new_kid = provider.rotate_keys()
    after = provider.mint(claims_for(issuer))
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    assert call(client, "/api/secret", after).status_code == 200
    assert call(client, "/api/secret", before).status_code == 200
    assert jwks_fetches(provider) == 1


def test_a_flood_of_unknown_key_ids_makes_at_most_one_key_fetch(
    api: Flask, issuer: str, provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api.test_client()
    assert call(client, "/api/secret", provider.mint(claims_for(issuer))).status_code == 200
    provider.log(clear=True)
    for n in range(100):
        refused(call(client, "/api/secret", forged(claims_for(issuer), f"attacker-{n}")))
    assert jwks_fetches(provider) <= 1
    # Past the interval, an unknown key id may make one more.
    validator = api.extensions["identity_api"][id(api.extensions["test_api_auth"])].validator
    later = time.monotonic() + bearer.REFETCH_INTERVAL + 1
    monkeypatch.setattr(validator.keys, "clock", lambda: later)
    for n in range(20):
        refused(call(client, "/api/secret", forged(claims_for(issuer), f"attacker-late-{n}")))
    assert jwks_fetches(provider) <= 2


def test_old_keys_do_not_make_requests_wait_for_a_refetch(
    api: Flask, issuer: str, provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys past their age are refetched by one request; the others go on with the key they hold."""
    client = api.test_client()
    token = provider.mint(claims_for(issuer))
    assert call(client, "/api/secret", token).status_code == 200
    keys = api.extensions["identity_api"][id(api.extensions["test_api_auth"])].validator.keys
    later = time.monotonic() + bearer.KEYS_MAX_AGE + 1
    monkeypatch.setattr(keys, "clock", lambda: later)
    answers: list[int] = []
    with keys._lock:  # a refetch under way, stalled at the provider
        worker = threading.Thread(target=lambda: answers.append(call(client, "/api/secret", token).status_code))
        worker.start()
        worker.join(5)
        assert answers == [200], "a request with a held key waited for the refetch"
    provider.log(clear=True)
    assert call(client, "/api/secret", token).status_code == 200  # this one refetches
    assert jwks_fetches(provider) == 1


# --- malformed requests -------------------------------------------------------------------------


def _with_header(header: bytes) -> dict[str, str]:
    """An Authorization header whose token has this (unsigned) JWT header."""
    return {"Authorization": f"Bearer {base64.urlsafe_b64encode(header).rstrip(b'=').decode()}.e30.c2ln"}


MALFORMED: list[tuple[str, dict[str, str], str | None]] = [
    ("no header", {}, None),
    ("basic scheme", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, None),
    ("scheme only", {"Authorization": "Bearer"}, "invalid_token"),
    ("empty bearer", {"Authorization": "Bearer "}, "invalid_token"),
    ("two words", {"Authorization": "Bearer abc def"}, "invalid_token"),
    ("garbage", {"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ("three bad parts", {"Authorization": "Bearer a.b.c"}, "invalid_token"),
    ("ten kilobytes", {"Authorization": "Bearer " + "A" * 10_000 + ".e30.x"}, "invalid_token"),
    ("twenty kilobytes", {"Authorization": "Bearer " + "A" * 20_000}, "invalid_token"),
    ("not utf-8", {"Authorization": "Bearer \xff\xfe\xfd.\xc3\x28.x"}, "invalid_token"),
    ("json header not object", {"Authorization": "Bearer WzFd.e30.x"}, "invalid_token"),
    ("alg a list", _with_header(b'{"alg": ["RS256"], "kid": "k"}'), "invalid_token"),
    ("alg an object", _with_header(b'{"alg": {"RS256": 1}, "kid": "k"}'), "invalid_token"),
    ("header nested deep", _with_header(b"[" * 5000 + b"]" * 5000), "invalid_token"),
    ("alg nested deep", _with_header(b'{"alg": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "invalid_token"),
]


@pytest.mark.parametrize(("case", "headers", "error"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_requests_are_401_with_a_json_body(
    api: Flask, case: str, headers: dict[str, str], error: str | None
) -> None:
    response = api.test_client().get("/api/secret", headers=headers)
    refused(response, 401, error)


def test_a_preflight_never_runs_the_view(api: Flask) -> None:
    response = api.test_client().options("/api/secret", headers={"Origin": "https://spa.example"})
    assert response.status_code == 200 and response.get_data() == b""
    assert "GET" in response.headers["Allow"]


def test_no_token_content_reaches_the_log(
    api: Flask, issuer: str, provider: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    client = api.test_client()
    tokens = [
        provider.mint(claims_for(issuer)),
        provider.mint(claims_for(issuer, exp=int(time.time()) - 999)),
        provider.mint(claims_for(issuer, scp="Nope")),
        forged(claims_for(issuer), "attacker"),
    ]
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            call(client, "/api/secret", token)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for token in tokens:
        for part in token.split("."):
            assert part not in text
    assert "Bearer token refused" in text


# --- the provider unreachable -------------------------------------------------------------------


def test_keys_unreachable_at_the_first_request_is_503_and_not_asked_again_at_once(
    provider: LocalProvider, issuer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_api(provider, timeout=1)
    client = app.test_client()
    keys = app.extensions["identity_api"][id(app.extensions["test_api_auth"])].validator.keys
    provider.fault("/openid-configuration", delay=3000, times=2)
    try:
        response = call(client, "/api/secret", provider.mint(claims_for(issuer)), Accept="text/html")
        assert response.status_code == 503 and response.is_json  # JSON, whatever the caller accepts
        assert response.get_json()["error"] == "temporarily_unavailable" and response.headers["Retry-After"]
        provider.log(clear=True)
        again = call(client, "/api/secret", provider.mint(claims_for(issuer)))
        assert again.status_code == 503
        assert not [e for e in provider.log() if "openid-configuration" in e["path"]]  # backing off
    finally:
        provider.clear_faults()
    later = time.monotonic() + bearer.FAILURE_BACKOFF + 1
    monkeypatch.setattr(keys, "clock", lambda: later)
    assert call(client, "/api/secret", provider.mint(claims_for(issuer))).status_code == 200


# --- further APIs -------------------------------------------------------------------------------


def create_middle_api(provider: LocalProvider) -> Flask:
    app = Flask(__name__)
    api_auth = ApiAuth(
        app, client_id=MIDDLE_API_CLIENT_ID, client_credential=MIDDLE_API_SECRET, authority=provider.entra_authority
    )
    app.extensions["test_api_auth"] = api_auth

    @app.route("/api/downstream")
    @api_auth.authorization_required(expected_scopes=["access_as_user"])
    def downstream(*, context: dict[str, Any]) -> Any:
        token = context["token_on_behalf_of"]([f"api://{DOWNSTREAM_API_CLIENT_ID}/Data.Read"])
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        return jsonify(claims=claims, caller=context["claims"]["oid"])

    @app.route("/api/as-app")
    @api_auth.authorization_required
    def as_app(*, context: dict[str, Any]) -> Any:
        token = api_auth.get_app_token([f"api://{DOWNSTREAM_API_CLIENT_ID}/.default"])
        return jsonify(claims=jwt.decode(token["access_token"], options={"verify_signature": False}))

    return app


def token_requests(provider: LocalProvider) -> int:
    return sum(1 for e in provider.log() if e["method"] == "POST" and e["path"].endswith("/token"))


def test_on_behalf_of_gets_the_callers_token_once_and_keeps_it(provider: LocalProvider) -> None:
    app = create_middle_api(provider)
    client = app.test_client()
    first = provider.user_token("obo-one", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    second = provider.user_token("obo-two", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    provider.log(clear=True)
    answers = [call(client, "/api/downstream", first) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers), answers[0].get_data(as_text=True)
    body = answers[0].get_json()
    assert body["claims"]["aud"] == DOWNSTREAM_API_CLIENT_ID and body["claims"]["scp"] == "Data.Read"
    assert body["claims"]["oid"] == body["caller"]  # the same user, further down
    assert body["claims"]["azp"] == MIDDLE_API_CLIENT_ID
    assert token_requests(provider) == 1  # the later calls were served from the cache
    other = call(client, "/api/downstream", second).get_json()
    assert other["claims"]["oid"] != body["claims"]["oid"]  # never another caller's token
    assert token_requests(provider) == 2


def test_an_app_token_is_cached_process_wide(provider: LocalProvider) -> None:
    app = create_middle_api(provider)
    client = app.test_client()
    caller = provider.user_token("as-app-user", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    provider.log(clear=True)
    answers = [call(client, "/api/as-app", caller) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers), answers[0].get_data(as_text=True)
    claims = answers[0].get_json()["claims"]
    assert claims["idtyp"] == "app" and claims["aud"] == DOWNSTREAM_API_CLIENT_ID and "scp" not in claims
    assert token_requests(provider) == 1


def test_the_web_app_gets_an_app_token_too(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    auth: Auth = app.extensions["test_auth"]
    with app.app_context():
        first = auth.get_app_token([f"{API_URI}/.default"])
        again = auth.get_app_token([f"{API_URI}/.default"])
    assert first["access_token"] == again["access_token"]
    assert jwt.decode(first["access_token"], options={"verify_signature": False})["aud"] == API_CLIENT_ID


# --- set-up -------------------------------------------------------------------------------------


def test_the_app_less_form_of_the_preview_works(issuer: str, provider: LocalProvider) -> None:
    api_auth = ApiAuth(client_id=API_CLIENT_ID, authority=provider.entra_authority)
    app = Flask(__name__)

    @app.route("/resource")
    @api_auth.authorization_required(expected_scopes={"Secret": f"{API_URI}/Secret"})
    def resource(*, context: dict[str, Any]) -> Any:
        return {"sub": context["claims"]["sub"]}

    response = call(app.test_client(), "/resource", provider.mint(claims_for(issuer)))
    assert response.status_code == 200 and response.get_json() == {"sub": "minted-user"}


def test_settings_come_from_app_config_and_pages_and_api_live_side_by_side(
    make_app: Callable[..., Flask], issuer: str, provider: LocalProvider, sign_in: Any
) -> None:
    app = make_app()
    app.config["IDENTITY_APP_ID_URI"] = API_URI
    api_auth = ApiAuth()
    api_auth.init_app(app)  # client id and authority: the IDENTITY_* keys Auth reads

    @app.route("/api/mine")
    @api_auth.authorization_required
    def mine(*, context: dict[str, Any]) -> Any:
        return {"sub": context["claims"]["sub"]}

    client = app.test_client()
    assert sign_in(client, "/profile").status_code == 302
    assert client.get("/profile").status_code == 200  # the page, with the session
    refused(client.get("/api/mine"), 401, None)  # the session cookie is not a bearer token
    token = provider.mint(claims_for(issuer, aud=CLIENT_ID))
    browserless = app.test_client()
    assert call(browserless, "/api/mine", token).status_code == 200
    assert browserless.get("/profile", headers={"Authorization": f"Bearer {token}"}).status_code == 302


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"authority": "https://login.microsoftonline.com/x"}, "client id"),
        ({"client_id": "x"}, "No authority"),
        ({"client_id": "x", "authority": "https://login.microsoftonline.com/x", "clock_leeway": 3600}, "clock_leeway"),
        ({"client_id": "x", "authority": "https://login.microsoftonline.com/x", "allowed_tenants": ["x"]}, "GUID"),
        ({"client_id": "x", "authority": "https://login.microsoftonline.com/x", "client_credential": 3}, "secret"),
        ({"client_id": "x", "tenant": "x"}, "unknown settings"),
    ],
)
def test_bad_settings_fail_at_start_up_naming_the_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ApiAuth(Flask(__name__), **settings)


def test_bad_view_arguments_fail_when_decorating() -> None:
    api_auth = ApiAuth()
    with pytest.raises(ConfigurationError, match="string"):
        api_auth.authorization_required(expected_scopes="Secret")
    with pytest.raises(ConfigurationError, match="string"):
        api_auth.authorization_required(roles="Jobs.Run")


def test_parallel_first_calls_for_an_app_token_make_one_grant(provider: LocalProvider) -> None:
    app = create_middle_api(provider)
    caller = provider.user_token("as-app-burst", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    provider.log(clear=True)
    answers: list[int] = []

    def one() -> None:
        answers.append(call(app.test_client(), "/api/as-app", caller).status_code)

    workers = [threading.Thread(target=one) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    assert answers == [200] * 8
    assert token_requests(provider) == 1


def test_no_token_or_secret_of_further_api_calls_reaches_any_log(
    provider: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """On-behalf-of and app tokens, with every logger at DEBUG (MSAL's included)."""
    app = create_middle_api(provider)
    client = app.test_client()
    caller = provider.user_token("quiet-caller", [f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"])
    with caplog.at_level(logging.DEBUG):
        downstream = call(client, "/api/downstream", caller)
        as_app = call(client, "/api/as-app", caller)
    assert downstream.status_code == 200 and as_app.status_code == 200
    assert any(r.name.startswith("msal") for r in caplog.records), "MSAL's debug log was not captured"
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    secrets = [MIDDLE_API_SECRET, *caller.split(".")]
    with app.app_context():
        auth: ApiAuth = app.extensions["test_api_auth"]
        secrets.append(auth.get_app_token([f"api://{DOWNSTREAM_API_CLIENT_ID}/.default"])["access_token"])
    for secret in secrets:
        assert secret not in text
