"""The local provider playing Entra for web APIs, checked with MSAL and PyJWT.

Access tokens for APIs (v2 and v1) from a sign-in and from its refresh token, client
credentials with app roles, on-behalf-of, key rotation, ``/__mint`` and multi-tenant
discovery. Every token is validated as an API does it: the key named by the header's
``kid`` from ``jwks_uri``, RS256, ``aud``, ``iss``, ``exp``/``nbf``.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from localidp import (
    API_CLIENT_ID,
    API_V1_CLIENT_ID,
    CLIENT_ID,
    DAEMON_CLIENT_ID,
    DAEMON_NO_ROLES_CLIENT_ID,
    DAEMON_NO_ROLES_SECRET,
    DAEMON_NO_ROLES_SERVICE_PRINCIPAL_ID,
    DAEMON_SECRET,
    DAEMON_SERVICE_PRINCIPAL_ID,
    DOWNSTREAM_API_CLIENT_ID,
    MIDDLE_API_CLIENT_ID,
    MIDDLE_API_SECRET,
    TENANT_ID,
    V1_ISSUER,
    LocalProvider,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SECRET_SCOPE = f"api://{API_CLIENT_ID}/Secret"
MIDDLE_SCOPE = f"api://{MIDDLE_API_CLIENT_ID}/access_as_user"
DOWNSTREAM_SCOPE = f"api://{DOWNSTREAM_API_CLIENT_ID}/Data.Read"


def validate(
    provider: LocalProvider,
    token: str,
    audience: str,
    issuer: str | None = None,
    *,
    require: tuple[str, ...] = ("exp", "iat", "nbf", "iss", "aud"),
) -> dict[str, Any]:
    """The token's claims, validated as a web API does (v2 issuer unless told)."""
    key = jwt.PyJWKSet.from_dict(provider.jwks())[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer or provider.oidc_authority,
        options={"require": list(require)},
    )
    return claims


def validate_id_token(provider: LocalProvider, token: str) -> dict[str, Any]:
    """An id token's claims, its signature checked against ``jwks_uri`` (it has no ``nbf``)."""
    return validate(provider, token, CLIENT_ID, require=("exp", "iat", "iss", "aud"))


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def token_request(provider: LocalProvider, **data: str) -> requests.Response:
    with provider.http() as http:
        return http.post(provider.token_endpoint, data=data, timeout=10)


def on_behalf_of(provider: LocalProvider, assertion: str, scope: str = DOWNSTREAM_SCOPE) -> requests.Response:
    """The middle API's on-behalf-of request, as MSAL sends it."""
    return token_request(
        provider,
        grant_type=JWT_BEARER,
        client_id=MIDDLE_API_CLIENT_ID,
        client_secret=MIDDLE_API_SECRET,
        assertion=assertion,
        requested_token_use="on_behalf_of",
        scope=f"{scope} openid profile offline_access",
    )


def delegated_claims(provider: LocalProvider, **changes: Any) -> dict[str, Any]:
    """Claims of a user's v2 access token for the middle API, with ``changes``."""
    now = int(time.time())
    claims = {
        "aud": MIDDLE_API_CLIENT_ID,
        "iss": provider.oidc_authority,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "azp": CLIENT_ID,
        "azpacr": "1",
        "name": "Minted Mia",
        "oid": "12345678-0000-4000-8000-00000000abcd",
        "preferred_username": "mia@example.test",
        "scp": "access_as_user",
        "sub": "minted-mia",
        "tid": TENANT_ID,
        "uti": "minted",
        "ver": "2.0",
    }
    claims.update(changes)
    return claims


# Access tokens for APIs, from a sign-in and its refresh token


def test_sign_in_for_an_api_gives_an_entra_v2_access_token(provider: LocalProvider) -> None:
    result = provider.sign_in_with_msal(provider.msal_app(), "api-ann", [SECRET_SCOPE])
    token = result["access_token"]

    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": provider.key_ids()[0]}
    claims = validate(provider, token, API_CLIENT_ID)
    user = result["id_token_claims"]
    assert claims["iss"] == f"{provider.origin}/{TENANT_ID}/v2.0"
    assert (claims["aud"], claims["azp"], claims["azpacr"], claims["scp"], claims["ver"]) == (
        API_CLIENT_ID,
        CLIENT_ID,
        "1",
        "Secret",
        "2.0",
    )
    assert (claims["sub"], claims["oid"], claims["tid"]) == (user["sub"], user["oid"], TENANT_ID)
    assert (claims["name"], claims["preferred_username"]) == ("Api-ann", "api-ann@example.test")
    assert claims["nbf"] <= time.time() < claims["exp"] and claims["exp"] - claims["iat"] == 3600
    assert claims["uti"] and not {"appid", "appidacr", "upn", "unique_name", "roles", "idtyp"} & claims.keys()
    # MSAL files the token under the API scope the provider answers with.
    assert result["scope"] == SECRET_SCOPE


@pytest.mark.parametrize(
    ("scope", "scp"),
    [
        (f"{API_CLIENT_ID}/Secret", "Secret"),
        (f"api://{API_CLIENT_ID}/Todo.Read", "Todo.Read"),
        (f"api://{API_CLIENT_ID}/.default", "Secret Todo.Read"),
        (f"{API_CLIENT_ID}/.default", "Secret Todo.Read"),
    ],
)
def test_every_spelling_of_an_api_scope(provider: LocalProvider, scope: str, scp: str) -> None:
    claims = validate(provider, provider.user_token("api-bea", [scope]), API_CLIENT_ID)
    assert (claims["scp"], claims["aud"]) == (scp, API_CLIENT_ID)


def test_v1_api_gets_a_v1_token(provider: LocalProvider) -> None:
    token = provider.user_token("api-cy", [f"api://{API_V1_CLIENT_ID}/Secret"])

    claims = validate(provider, token, f"api://{API_V1_CLIENT_ID}", issuer=V1_ISSUER)
    assert claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/"
    assert (claims["appid"], claims["appidacr"], claims["scp"], claims["ver"]) == (CLIENT_ID, "1", "Secret", "1.0")
    assert (claims["upn"], claims["unique_name"], claims["name"]) == ("api-cy@example.test",) * 2 + ("Api-cy",)
    assert (claims["sub"], claims["tid"]) == ("api-cy", TENANT_ID) and claims["oid"]
    assert not {"azp", "azpacr", "preferred_username"} & claims.keys()


def test_scopes_other_than_apis_keep_their_opaque_token(provider: LocalProvider) -> None:
    token = provider.user_token("api-dot", ["User.Read"])
    assert token.count(".") == 0


def test_refresh_token_serves_any_api(provider: LocalProvider) -> None:
    app = provider.msal_app()
    first = provider.sign_in_with_msal(app, "api-eve", [SECRET_SCOPE])
    account = app.get_accounts()[0]

    v1 = app.acquire_token_silent([f"api://{API_V1_CLIENT_ID}/Secret"], account=account)
    downstream = app.acquire_token_silent([DOWNSTREAM_SCOPE], account=account)
    every = app.acquire_token_silent([f"{API_CLIENT_ID}/.default"], account=account)

    assert v1 is not None and downstream is not None and every is not None
    assert {v1["token_source"], downstream["token_source"], every["token_source"]} == {"identity_provider"}
    oid = first["id_token_claims"]["oid"]
    v1_claims = validate(provider, v1["access_token"], f"api://{API_V1_CLIENT_ID}", issuer=V1_ISSUER)
    assert (v1_claims["ver"], v1_claims["oid"], v1_claims["appid"]) == ("1.0", oid, CLIENT_ID)
    assert validate(provider, downstream["access_token"], DOWNSTREAM_API_CLIENT_ID)["scp"] == "Data.Read"
    assert validate(provider, every["access_token"], API_CLIENT_ID)["scp"] == "Secret Todo.Read"
    # The first token is still MSAL's cached one.
    cached = app.acquire_token_silent([SECRET_SCOPE], account=account)
    assert cached is not None and cached["access_token"] == first["access_token"]


def test_scopes_of_two_apis_are_refused(provider: LocalProvider) -> None:
    app = provider.msal_app()
    both = provider.sign_in_with_msal(app, "api-fay", [SECRET_SCOPE, DOWNSTREAM_SCOPE])
    assert both.get("error") == "invalid_scope" and "AADSTS28000" in both["error_description"]

    signed_in = provider.sign_in_with_msal(app, "api-fay", [SECRET_SCOPE])
    refresh = {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": provider.clients()[0]["client_secret"],
        "refresh_token": signed_in["refresh_token"],
    }
    refused = token_request(provider, **refresh, scope=f"{SECRET_SCOPE} {DOWNSTREAM_SCOPE} offline_access")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert "AADSTS28000" in refused.json()["error_description"]
    unknown = token_request(provider, **refresh, scope=f"api://{API_CLIENT_ID}/Nope offline_access")
    assert unknown.status_code == 400 and "AADSTS70011" in unknown.json()["error_description"]
    # The same refresh token for one API is fine.
    one = token_request(provider, **refresh, scope=f"{DOWNSTREAM_SCOPE} openid offline_access")
    assert one.status_code == 200, one.text
    assert one.json()["scope"] == DOWNSTREAM_SCOPE
    assert validate(provider, one.json()["access_token"], DOWNSTREAM_API_CLIENT_ID)["sub"] == "api-fay"


# Client credentials


def test_client_credentials_carry_the_app_roles(provider: LocalProvider) -> None:
    answer = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{API_CLIENT_ID}/.default")

    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
    assert not {"scope", "refresh_token", "id_token"} & answer.keys()
    claims = validate(provider, answer["access_token"], API_CLIENT_ID)
    assert claims["roles"] == ["Jobs.Run"] and claims["idtyp"] == "app"
    assert claims["oid"] == claims["sub"] == DAEMON_SERVICE_PRINCIPAL_ID
    assert (claims["azp"], claims["azpacr"], claims["tid"], claims["ver"]) == (DAEMON_CLIENT_ID, "1", TENANT_ID, "2.0")
    assert not {"scp", "name", "preferred_username"} & claims.keys()


def test_client_credentials_with_msal(provider: LocalProvider) -> None:
    app = provider.msal_app(DAEMON_CLIENT_ID, DAEMON_SECRET)
    result = app.acquire_token_for_client([f"{API_CLIENT_ID}/.default"])
    assert "access_token" in result, result
    assert validate(provider, result["access_token"], API_CLIENT_ID)["roles"] == ["Jobs.Run"]
    again = app.acquire_token_for_client([f"{API_CLIENT_ID}/.default"])
    assert again["token_source"] == "cache"


def test_client_credentials_without_roles_have_no_roles_claim(provider: LocalProvider) -> None:
    none = provider.app_token(DAEMON_NO_ROLES_CLIENT_ID, DAEMON_NO_ROLES_SECRET, f"api://{API_CLIENT_ID}/.default")
    claims = validate(provider, none["access_token"], API_CLIENT_ID)
    assert "roles" not in claims and claims["oid"] == DAEMON_NO_ROLES_SERVICE_PRINCIPAL_ID

    # The daemon has roles on one API only.
    elsewhere = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"{DOWNSTREAM_API_CLIENT_ID}/.default")
    assert "roles" not in validate(provider, elsewhere["access_token"], DOWNSTREAM_API_CLIENT_ID)
    v1 = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{API_V1_CLIENT_ID}/.default")
    v1_claims = validate(provider, v1["access_token"], f"api://{API_V1_CLIENT_ID}", issuer=V1_ISSUER)
    assert (v1_claims["appid"], v1_claims["idtyp"], v1_claims["ver"]) == (DAEMON_CLIENT_ID, "app", "1.0")
    assert "roles" not in v1_claims


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        (SECRET_SCOPE, "AADSTS1002012"),
        (f"api://{API_CLIENT_ID}", "AADSTS1002012"),
        ("api://no-such-api/.default", "AADSTS500011"),
        (f"api://{API_CLIENT_ID}/.default {DOWNSTREAM_API_CLIENT_ID}/.default", "AADSTS28000"),
    ],
)
def test_client_credentials_need_one_default_scope(provider: LocalProvider, scope: str, code: str) -> None:
    answer = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, scope)
    assert answer.get("error") == "invalid_scope" and code in answer["error_description"], answer
    assert "access_token" not in answer


def test_client_credentials_need_the_right_secret(provider: LocalProvider) -> None:
    answer = provider.app_token(DAEMON_CLIENT_ID, "wrong", f"api://{API_CLIENT_ID}/.default")
    assert answer.get("error") == "invalid_client" and "access_token" not in answer


# On-behalf-of


def test_on_behalf_of_with_msal(provider: LocalProvider) -> None:
    incoming_token = provider.user_token("api-gus", [MIDDLE_SCOPE])
    incoming = validate(provider, incoming_token, MIDDLE_API_CLIENT_ID)
    middle = provider.msal_app(MIDDLE_API_CLIENT_ID, MIDDLE_API_SECRET)

    result = middle.acquire_token_on_behalf_of(incoming_token, [DOWNSTREAM_SCOPE])

    assert "access_token" in result, result
    claims = validate(provider, result["access_token"], DOWNSTREAM_API_CLIENT_ID)
    for claim in ("oid", "sub", "tid", "name", "preferred_username"):
        assert claims[claim] == incoming[claim], claim
    assert (claims["scp"], claims["azp"], claims["azpacr"]) == ("Data.Read", MIDDLE_API_CLIENT_ID, "1")
    assert not {"roles", "idtyp"} & claims.keys()


def test_on_behalf_of_answers_with_an_access_token_only(provider: LocalProvider) -> None:
    incoming = provider.user_token("api-hal", [f"{MIDDLE_API_CLIENT_ID}/.default"])

    answer = on_behalf_of(provider, incoming, f"{DOWNSTREAM_API_CLIENT_ID}/.default")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert not {"refresh_token", "id_token"} & body.keys()
    assert (body["token_type"], body["scope"]) == ("Bearer", f"{DOWNSTREAM_API_CLIENT_ID}/.default")
    assert validate(provider, body["access_token"], DOWNSTREAM_API_CLIENT_ID)["sub"] == "api-hal"


def test_on_behalf_of_takes_the_user_from_the_assertion(provider: LocalProvider) -> None:
    answer = on_behalf_of(provider, provider.mint(delegated_claims(provider)))
    assert answer.status_code == 200, answer.text
    claims = validate(provider, answer.json()["access_token"], DOWNSTREAM_API_CLIENT_ID)
    expected = delegated_claims(provider)
    for claim in ("oid", "sub", "name", "preferred_username"):
        assert claims[claim] == expected[claim], claim
    # The identifier URI is the middle API's audience as well.
    by_uri = on_behalf_of(provider, provider.mint(delegated_claims(provider, aud=f"api://{MIDDLE_API_CLIENT_ID}")))
    assert by_uri.status_code == 200, by_uri.text


def foreign_token(claims: dict[str, Any], kid: str) -> str:
    """``claims`` signed by a key this provider never had, under one of its kids."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another audience", "audience"),
        ("app-only", "not a delegated"),
        ("expired", "expired"),
        ("not yet valid", "not yet valid"),
        ("another tenant", "tenant"),
        ("another issuer", "issuer"),
        ("no scp", "not a delegated"),
        ("foreign key", "signature"),
        ("unknown kid", "not signed by this provider"),
        ("not a JWT", "not a"),
    ],
)
def test_on_behalf_of_refuses_a_bad_assertion(provider: LocalProvider, case: str, reason: str) -> None:
    now = int(time.time())
    if case == "another audience":  # a real user token, for another API
        assertion = provider.user_token("api-ida", [SECRET_SCOPE])
    elif case == "app-only":  # a real app token for the middle API
        assertion = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{MIDDLE_API_CLIENT_ID}/.default")[
            "access_token"
        ]
    elif case == "expired":
        assertion = provider.mint(delegated_claims(provider, iat=now - 4000, nbf=now - 4000, exp=now - 60))
    elif case == "not yet valid":
        assertion = provider.mint(delegated_claims(provider, nbf=now + 600, exp=now + 1200))
    elif case == "another tenant":
        assertion = provider.mint(delegated_claims(provider, tid="99999999-0000-4000-8000-000000000000"))
    elif case == "another issuer":
        assertion = provider.mint(delegated_claims(provider, iss="https://login.example.test/other/v2.0"))
    elif case == "no scp":
        assertion = provider.mint({k: v for k, v in delegated_claims(provider).items() if k != "scp"})
    elif case == "foreign key":
        assertion = foreign_token(delegated_claims(provider), provider.key_ids()[0])
    elif case == "unknown kid":
        assertion = foreign_token(delegated_claims(provider), "someone-elses-key")
    else:
        assertion = "not-a-jwt"

    answer = on_behalf_of(provider, assertion)

    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "invalid_grant" and "access_token" not in body
    assert body["error_description"].startswith("AADSTS50013: ") and reason in body["error_description"], body


def test_on_behalf_of_refuses_scopes_that_are_not_an_apis(provider: LocalProvider) -> None:
    answer = on_behalf_of(provider, provider.mint(delegated_claims(provider)), "User.Read")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"


def test_on_behalf_of_with_msal_reports_the_refusal(provider: LocalProvider) -> None:
    middle = provider.msal_app(MIDDLE_API_CLIENT_ID, MIDDLE_API_SECRET)
    wrong = provider.user_token("api-jo", [f"api://{API_V1_CLIENT_ID}/Secret"])
    result = middle.acquire_token_on_behalf_of(wrong, [DOWNSTREAM_SCOPE])
    assert result.get("error") == "invalid_grant" and "AADSTS50013" in result["error_description"], result


# /__mint


def test_mint_signs_any_claims_with_the_providers_key(provider: LocalProvider) -> None:
    claims = {"aud": "anyone", "iss": "https://elsewhere.example/", "exp": int(time.time()) - 10, "list": [1, "a"]}

    token = provider.mint(claims, header={"typ": "at+jwt", "x-test": "yes"})

    kid = provider.key_ids()[0]
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "at+jwt", "kid": kid, "x-test": "yes"}
    key = jwt.PyJWKSet.from_dict(provider.jwks())[kid]
    assert jwt.decode(token, key, algorithms=["RS256"], options={"verify_exp": False, "verify_aud": False}) == claims
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, key, algorithms=["RS256"], audience="anyone")


def test_mint_signs_rs256_whatever_the_header_says(provider: LocalProvider) -> None:
    token = provider.mint({"sub": "x"}, header={"alg": "none", "kid": "made-up"})

    assert jwt.get_unverified_header(token) == {"alg": "none", "typ": "JWT", "kid": "made-up"}
    signing_input, signature = token.rsplit(".", 1)
    public = RSAAlgorithm.from_jwk(provider.jwks()["keys"][0])
    assert RSAAlgorithm(RSAAlgorithm.SHA256).verify(
        signing_input.encode(), public, jwt.utils.base64url_decode(signature)
    )


def test_mint_with_a_named_key(provider: LocalProvider) -> None:
    oldest = provider.key_ids()[-1]
    token = provider.mint({"sub": "x"}, kid=oldest)
    assert kid_of(token) == oldest
    key = jwt.PyJWKSet.from_dict(provider.jwks())[oldest]
    assert jwt.decode(token, key, algorithms=["RS256"]) == {"sub": "x"}
    with pytest.raises(requests.HTTPError) as refused:
        provider.mint({"sub": "x"}, kid="no-such-key")
    assert refused.value.response.status_code == 400


# Multi-tenant discovery


@pytest.mark.parametrize("authority", ["organizations", "common"])
def test_multi_tenant_discovery(provider: LocalProvider, authority: str) -> None:
    with provider.http() as http:
        document = http.get(f"{provider.origin}/{authority}/v2.0/.well-known/openid-configuration", timeout=10).json()
        tenant = http.get(f"{provider.oidc_authority}/.well-known/openid-configuration", timeout=10).json()

    assert document["issuer"] == f"{provider.origin}/{{tenantid}}/v2.0"
    assert document["jwks_uri"] == tenant["jwks_uri"] == provider.jwks_uri
    assert tenant["issuer"] == provider.oidc_authority
    assert {k: v for k, v in document.items() if k != "issuer"} == {k: v for k, v in tenant.items() if k != "issuer"}
    # A multi-tenant API puts the token's tid into the template and gets the token's issuer.
    claims = unverified(
        provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"{API_CLIENT_ID}/.default")["access_token"]
    )
    assert document["issuer"].replace("{tenantid}", claims["tid"]) == claims["iss"]


def test_msal_reads_the_organizations_document(idp: LocalProvider) -> None:
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential="unused",
        authority=idp.organizations_authority,
        instance_discovery=False,
        http_client=idp.http(),
    )
    assert app.authority.token_endpoint == idp.token_endpoint
    discovery = [e["path"] for e in idp.log() if e["path"].endswith("/.well-known/openid-configuration")]
    assert discovery == ["/organizations/v2.0/.well-known/openid-configuration"]


# Key rotation (last: every later token is signed by the new key)


def test_key_rotation(provider: LocalProvider) -> None:
    before = provider.key_ids()
    app = provider.msal_app(token_cache=msal.TokenCache())
    browser = provider.browser()
    signed_in = provider.sign_in_with_msal(app, "api-kim", [SECRET_SCOPE], browser=browser)
    for_middle = provider.user_token("api-lou", [MIDDLE_SCOPE])
    app_token = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{API_CLIENT_ID}/.default")["access_token"]
    assert kid_of(signed_in["access_token"]) == kid_of(signed_in["id_token"]) == kid_of(app_token) == before[0]

    new_kid = provider.rotate_keys()

    after = provider.key_ids()
    assert new_kid not in before and after == [new_kid, *before]
    assert [key["kid"] for key in provider.jwks()["keys"]] == after
    with provider.http() as http:
        report = http.get(f"{provider.origin}/__keys/rotate", timeout=10).json()  # GET only reports
    assert report == {"kid": new_kid, "kids": after}
    # Tokens signed before still validate; new ones, id tokens too, carry the new kid.
    assert validate(provider, app_token, API_CLIENT_ID)["roles"] == ["Jobs.Run"]
    assert validate(provider, signed_in["access_token"], API_CLIENT_ID)["sub"] == "api-kim"
    assert validate_id_token(provider, signed_in["id_token"])["sub"] == "api-kim"
    new_app_token = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{API_CLIENT_ID}/.default")
    assert kid_of(new_app_token["access_token"]) == new_kid
    validate(provider, new_app_token["access_token"], API_CLIENT_ID)
    fresh = provider.sign_in_with_msal(provider.msal_app(), "api-max", ["User.Read"])
    assert kid_of(fresh["id_token"]) == new_kid
    assert validate_id_token(provider, fresh["id_token"])["sub"] == "api-max"
    # The refresh token from before the rotation still works, and its browser session too.
    refreshed = app.acquire_token_silent([SECRET_SCOPE], account=app.get_accounts()[0], force_refresh=True)
    assert refreshed is not None and refreshed["token_source"] == "identity_provider", refreshed
    assert kid_of(refreshed["access_token"]) == new_kid
    assert validate(provider, refreshed["access_token"], API_CLIENT_ID)["sub"] == "api-kim"
    again = provider.sign_in_with_msal(provider.msal_app(), "someone-else", ["User.Read"], browser=browser)
    assert again["id_token_claims"]["sub"] == "api-kim"  # single sign-on: no login form shown
    # An assertion signed by the older key is still accepted for on-behalf-of.
    assert kid_of(for_middle) == before[0]
    obo = on_behalf_of(provider, for_middle)
    assert obo.status_code == 200, obo.text
    assert kid_of(obo.json()["access_token"]) == new_kid
