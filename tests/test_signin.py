"""Sign-in, tokens and sign-out against the local OpenID Connect provider, per authority kind."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import APP_ORIGIN, SignIn, b2c_settings, session_cookie
from flask import Flask
from localidp import EXTERNAL_ID_TENANT, SHORT_CLIENT_ID, LocalProvider


def test_entra_sign_in_returns_to_the_page_first_asked_for(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    response = sign_in(client, "/profile?tab=2&x=%2F", login="alice")
    assert response.status_code == 302
    assert response.location == "/profile?tab=2&x=%2F"
    page = client.get("/profile?tab=2&x=%2F").get_data(as_text=True)
    assert 'id="name">Alice<' in page
    assert "alice@example.test" in page


def test_session_id_is_regenerated_at_sign_in(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    client.get("/note?text=kept")  # the app stored something for the anonymous visitor
    before = session_cookie(client)
    assert before
    assert sign_in(client, "/profile").location == "/profile"
    after = session_cookie(client)
    assert after and after != before
    assert client.get("/note").get_data(as_text=True) == "kept"
    stale = app.test_client(use_cookies=False)
    assert (
        stale.get("/whoami", headers={"Accept": "application/json", "Cookie": f"session={before}"}).status_code == 401
    )


def test_context_user_holds_id_token_claims(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/whoami", login="bob")
    body = client.get("/whoami").get_json()
    assert body == {"sub": "bob", "name": "Bob"}


@pytest.mark.parametrize("kind", ["oidc", "external_id"])
def test_other_authority_kinds_sign_in(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, kind: str
) -> None:
    if kind == "oidc":
        app = make_app(authority=None, oidc_authority=idp.oidc_authority)
    else:
        app = make_app(authority=idp.external_id_authority)
    client = app.test_client()
    sign_in(client, "/whoami", login="carol")
    assert client.get("/whoami").get_json()["sub"] == "carol"
    assert EXTERNAL_ID_TENANT in idp.external_id_authority


def test_b2c_sign_in(make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider) -> None:
    app = make_app(**b2c_settings(idp), authority=None)
    client = app.test_client()
    sign_in(client, "/whoami", login="dave")
    assert client.get("/whoami").get_json()["sub"] == "dave"
    paths = {entry["path"] for entry in idp.log()}
    assert any("/B2C_1_signupsignin/oauth2/v2.0/token" in p for p in paths)


def test_scoped_view_gets_a_token_without_provider_requests_once_cached(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    sign_in(client, "/token", login="erin")
    first = client.get("/token").get_json()
    assert first["sub"] == "erin" and len(first["access_token"]) > 20
    idp.log(clear=True)
    for _ in range(3):
        assert client.get("/token").get_json()["access_token"] == first["access_token"]
    assert idp.log() == []


def test_short_lived_token_is_refreshed_silently(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(client_id=SHORT_CLIENT_ID)
    client = app.test_client()
    sign_in(client, "/token")
    first = client.get("/token").get_json()["access_token"]
    idp.log(clear=True)
    second = client.get("/token")
    assert second.status_code == 200
    assert second.get_json()["access_token"] != first
    token_posts = [e for e in idp.log() if e["method"] == "POST" and e["path"].endswith("/token")]
    assert len(token_posts) == 1


def test_incremental_consent_sends_the_user_through_sign_in_for_new_scopes(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    # A user who never consented to Files.Read: the provider keeps consent per user and app.
    assert sign_in(client, "/profile", login="consent-signin").status_code == 302
    response = client.get("/files")
    assert response.status_code == 302
    login = urlsplit(response.location)
    assert login.path == "/login"
    assert parse_qs(login.query)["scopes"] == ["Files.Read"]
    auth_uri = sign_in.start(client, response.location)
    assert "Files.Read" in parse_qs(urlsplit(auth_uri).query)["scope"][0]
    back = sign_in.finish(client, idp.sign_in(auth_uri, login="consent-signin"))
    assert back.location == "/files"
    body = client.get("/files").get_json()
    assert "Files.Read" in body["scopes"]
    assert "refresh_token" not in body["keys"] and "access_token" in body["keys"]


def test_logout_clears_the_session_and_signs_out_at_the_provider(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    assert sign_in(client, "/profile").status_code == 302
    response = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 302
    target = urlsplit(response.location)
    assert response.location.startswith(idp.entra_authority + "/oauth2/v2.0/logout?")
    # on the redirect URI's origin, whatever Host the request named (the test client's is localhost)
    assert parse_qs(target.query)["post_logout_redirect_uri"] == [APP_ORIGIN + "/"]
    assert "post_logout_redirect_uri=" + quote(APP_ORIGIN + "/", safe="") in target.query
    assert client.get("/profile").status_code == 302
    back = idp.sign_in(response.location)
    assert back == APP_ORIGIN + "/"
