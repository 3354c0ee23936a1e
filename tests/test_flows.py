"""Sign-in flows end to end against the local provider: tabs, B2C user flows, errors, protected views."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import flask
import pytest
import requests
from conftest import APP_ORIGIN, LiveServer, SignIn, b2c_settings, session_cookie
from flask import Flask
from flask.testing import FlaskClient
from localidp import SHORT_CLIENT_ID, LocalProvider, free_port, path_and_query, query_of

from identity_flask import pending, session_data


def session_of(client: FlaskClient) -> dict[str, Any]:
    """The session of ``client``'s browser, as the app reads it."""
    with client.session_transaction() as session:
        return dict(session)


def test_two_tabs_signing_in_at_once_both_complete(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    first = sign_in.start(client, "/profile?tab=1")
    second = sign_in.start(client, "/whoami?tab=2")
    assert query_of(first)["state"] != query_of(second)["state"]
    back_second = sign_in.finish(client, idp.sign_in(second, login="tabby"))
    assert back_second.location == "/whoami?tab=2"
    back_first = sign_in.finish(client, idp.sign_in(first, login="tabby"))
    assert back_first.location == "/profile?tab=1"
    assert client.get("/whoami").get_json()["sub"] == "tabby"
    assert pending_count(client) == 0  # both taken out, nothing left pending


def pending_count(client: FlaskClient) -> int:
    """How many sign-ins ``client`` has pending, as the app reads them."""
    return int(client.get("/pending-sign-ins").get_json()["count"])


def test_pending_sign_ins_are_capped_and_expire(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [time.time()]
    monkeypatch.setattr(pending, "clock", lambda: now[0])
    app = make_app(max_pending_sign_ins=3, sign_in_timeout=60)
    client = app.test_client()
    oldest = sign_in.start(client, "/profile")
    for _ in range(3):
        now[0] += 1
        sign_in.start(client, "/profile")
    assert pending_count(client) == 3
    evicted = sign_in.finish(client, idp.sign_in(oldest))
    assert evicted.status_code == 400
    assert "does not match a sign-in started in this browser" in evicted.get_data(as_text=True)

    slow = sign_in.start(client, "/profile")
    callback = idp.sign_in(slow)
    now[0] += 61
    assert pending_count(client) == 0
    expired = sign_in.finish(client, callback)
    assert expired.status_code == 400
    assert "expired" in expired.get_data(as_text=True)
    assert pending_count(client) == 0
    assert session_of(client).keys() <= {"_permanent"}, "a pending sign-in wrote a server-side session"


#: The longest header line gunicorn accepts by default (limit_request_field_size); nginx's
#: default buffers hold 8 KB too. A longer Cookie header is refused before the app runs.
SERVER_HEADER_LIMIT = 8190


def cookie_header(client: FlaskClient) -> str:
    """The Cookie header ``client`` sends now."""
    with client:
        client.get("/")
        return flask.request.headers.get("Cookie", "")


def test_crafted_long_return_addresses_cannot_grow_the_cookies_past_what_servers_accept(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    """Links to /login with 2 KB random return addresses (a page of <img> tags with form_post's
    SameSite=None cookies, or a few clicks): older sign-ins are dropped so that every cookie of
    the extension stays far below a server's limit, and the user is neither locked out nor
    signed out."""
    client = app.test_client()
    assert sign_in(client, "/whoami").status_code == 302
    rnd = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
    for _ in range(12):
        link = "/login?" + urlencode({"next": "/" + "".join(rnd.choice(alphabet) for _ in range(2040))})
        assert client.get(link).status_code == 302
    sent = cookie_header(client)
    assert len(sent) < SERVER_HEADER_LIMIT - 1500, f"{len(sent)} bytes of cookies"  # room for the app's own
    assert pending_count(client) >= 1
    assert client.get("/whoami").get_json()["sub"] == "alice"
    assert sign_in(client, "/login?next=/whoami", login="bob").status_code == 302  # sign-in still works
    assert client.get("/whoami").get_json()["sub"] == "bob"


def test_eight_tabs_with_everyday_addresses_all_stay_pending(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    """The size bound leaves everyday use alone: eight tabs each signing in to a page of their own
    all come back to it."""
    client = app.test_client()
    tabs = [sign_in.start(client, f"/whoami?report=quarterly-{n}&sort=date") for n in range(8)]
    assert pending_count(client) == 8
    for n, auth_uri in enumerate(tabs):
        answer = sign_in.finish(client, idp.sign_in(auth_uri))
        assert answer.status_code == 302 and answer.location == f"/whoami?report=quarterly-{n}&sort=date"


def test_forged_and_replayed_state_are_refused_and_the_session_survives(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    client = app.test_client()
    sign_in(client, "/profile", login="victor")
    auth_uri = sign_in.start(client, "/login?next=/profile")
    callback = idp.sign_in(auth_uri, login="victor")
    forged = callback.replace(query_of(callback)["state"], "forged-state")
    response = sign_in.finish(client, forged)
    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
    assert sign_in.finish(client, callback).status_code == 302
    replay = sign_in.finish(client, callback)
    assert replay.status_code == 400
    assert client.get("/whoami").get_json()["sub"] == "victor"


def test_callback_without_any_query_is_a_400_not_a_500(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in.start(client, "/profile")  # a sign-in is pending
    response = client.get("/getAToken")
    assert response.status_code == 400
    assert "missing its state" in response.get_data(as_text=True)


def test_user_cancelling_at_the_provider_gets_a_403_page(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/profile"), action="cancel")
    assert query_of(callback)["error"] == "access_denied"
    response = sign_in.finish(client, callback)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "Sign-in was cancelled" in page and 'href="/login"' in page


def test_form_post_callback_completes(make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider) -> None:
    app = make_app(
        response_mode="form_post", flask_config={"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": True}
    )
    client = app.test_client()
    auth_uri = sign_in.start(client, "https://localhost/whoami")
    assert query_of(auth_uri)["response_mode"] == "form_post"
    posted = query_of(idp.sign_in(auth_uri, login="poster"))
    response = client.post("https://localhost/getAToken", data=posted)
    assert response.status_code == 302 and response.location == "/whoami"
    assert client.get("https://localhost/whoami").get_json()["sub"] == "poster"


def test_provider_down_gives_a_503_page_and_public_pages_still_work(make_app: Callable[..., Flask]) -> None:
    app = make_app(authority=f"https://127.0.0.1:{free_port()}/tenant", timeout=2)
    client = app.test_client()
    response = client.get("/login")
    assert response.status_code == 503
    assert "could not be reached" in response.get_data(as_text=True)
    assert response.headers["Retry-After"]
    assert client.get("/").status_code == 200
    api = client.get("/login", headers={"Accept": "application/json"})
    assert api.status_code == 503 and api.get_json()["error"] == "temporarily_unavailable"


def test_token_endpoint_failure_gives_a_502_page(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/profile"))
    idp.fault("/oauth2/v2.0/token", status=500, times=2)
    response = sign_in.finish(client, callback)
    assert response.status_code == 502
    assert "Traceback" not in response.get_data(as_text=True)
    assert client.get("/").status_code == 200


def test_b2c_edit_profile_goes_through_its_user_flow_and_keeps_the_session(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(**b2c_settings(idp), authority=None)
    client = app.test_client()
    sign_in(client, "/token", login="bea")
    token_before = client.get("/token").get_json()["access_token"]
    with app.test_request_context("/profile"):
        edit_url = app.extensions["test_auth"].get_edit_profile_url()
    assert edit_url == "/login?next=/profile&flow=edit_profile"
    auth_uri = sign_in.start(client, edit_url)
    assert "/B2C_1_editprofile/" in auth_uri
    back = sign_in.finish(client, idp.sign_in(auth_uri, login="bea"))
    assert back.location == "/profile"
    assert client.get("/whoami").get_json()["sub"] == "bea"
    assert client.get("/token").get_json()["access_token"] == token_before


def test_b2c_forgot_password_starts_the_reset_flow(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(**b2c_settings(idp), authority=None)
    client = app.test_client()
    callback = idp.sign_in(sign_in.start(client, "/whoami"), action="forgot")
    assert "AADB2C90118" in query_of(callback)["error_description"]
    response = sign_in.finish(client, callback)
    assert response.status_code == 302
    assert "/B2C_1_reset/oauth2/v2.0/authorize" in response.location
    done = sign_in.finish(client, idp.sign_in(response.location, login="forgetful"))
    assert done.location == "/whoami"
    assert client.get("/whoami").get_json()["sub"] == "forgetful"


def test_b2c_error_page_offers_the_reset_link(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(**b2c_settings(idp), authority=None)
    client = app.test_client()
    response = sign_in.finish(client, idp.sign_in(sign_in.start(client, "/whoami"), action="cancel"))
    assert response.status_code == 403
    assert 'href="/login?flow=reset_password"' in response.get_data(as_text=True)


def test_signed_out_api_caller_gets_401_json(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/whoami", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "login_required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    xhr = client.get("/whoami", headers={"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"})
    assert xhr.status_code == 401
    fetch = client.get("/whoami", headers={"Sec-Fetch-Mode": "cors", "Accept": "*/*"})
    assert fetch.status_code == 401
    assert session_cookie(client) is None  # refusing a caller stores no session


def test_browser_navigation_is_redirected_to_sign_in(app: Flask) -> None:
    response = app.test_client().get(
        "/whoami?q=1", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Sec-Fetch-Mode": "navigate"}
    )
    assert response.status_code == 302
    assert response.location == "/login?next=/whoami?q%3D1"


def test_options_gets_the_default_preflight_answer_without_running_the_view(app: Flask) -> None:
    response = app.test_client().options("/cors", headers={"Origin": "https://other.example"})
    assert response.status_code == 200
    assert response.data == b""  # the view (which would answer {"user": null}) did not run
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "OPTIONS"}


def test_async_views_are_supported(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/async", login="ann")
    assert client.get("/async").get_json() == {"sub": "ann", "view": "async"}


def test_signed_in_views_make_no_provider_requests_and_discovery_happens_once(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    first, second = app.test_client(), app.test_client()
    assert sign_in(first, "/token", login="one").status_code == 302
    assert sign_in(second, "/token", login="two").status_code == 302
    discovery = [e for e in idp.log() if e["path"].endswith("/.well-known/openid-configuration")]
    assert len(discovery) == 1
    idp.log(clear=True)
    for client, login in ((first, "one"), (second, "two")):
        assert client.get("/profile").status_code == 200
        assert client.get("/token").get_json()["sub"] == login
    assert idp.log() == []


def test_token_cache_is_written_back_only_when_it_changed(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    steady = make_app().test_client()
    sign_in(steady, "/token")
    before = session_of(steady)[session_data.CACHE_KEY]
    response = steady.get("/token")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers  # the session was not stored again
    assert session_of(steady)[session_data.CACHE_KEY] == before

    refreshing = make_app(client_id=SHORT_CLIENT_ID).test_client()
    sign_in(refreshing, "/token")
    before = session_of(refreshing)[session_data.CACHE_KEY]
    assert refreshing.get("/token").status_code == 200  # a 5-second token: refreshed
    assert session_of(refreshing)[session_data.CACHE_KEY] != before


def test_signing_in_as_someone_else_replaces_the_user_and_tokens(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/token", login="first")
    first_token = client.get("/token").get_json()["access_token"]
    sign_in(client, "/login?next=/token&scopes=User.Read", login="second")
    response = client.get("/token")
    assert response.status_code == 200, (response.status_code, response.location)
    body = response.get_json()
    assert body["sub"] == "second" and body["access_token"] != first_token
    cache = session_of(client)[session_data.CACHE_KEY]
    assert first_token not in cache
    assert "first@example.test" not in cache


def test_logout_forgets_everything_and_returns_to_the_post_logout_view(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(post_logout_view="signed_out_page")
    client = app.test_client()
    assert sign_in(client, "/token").status_code == 302
    sign_in.start(client, "/login?next=/profile")  # leaves a pending sign-in behind
    response = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    target = parse_qs(urlsplit(response.location).query)["post_logout_redirect_uri"][0]
    assert target == APP_ORIGIN + "/signed-out"
    assert session_cookie(client) is None
    assert client.get("/token", headers={"Accept": "application/json"}).status_code == 401
    assert idp.sign_in(response.location) == target


def test_generic_oidc_logout_uses_the_discovered_end_session_endpoint(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = make_app(authority=None, oidc_authority=idp.oidc_authority)
    client = app.test_client()
    assert sign_in(client, "/profile").status_code == 302
    location = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).location
    assert location.startswith(idp.entra_authority + "/oauth2/v2.0/logout?")
    assert query_of(location)["client_id"] == app.extensions["identity"].settings.client_id


def test_cross_site_logout_only_asks_for_confirmation(app: Flask, sign_in: SignIn) -> None:
    client = app.test_client()
    sign_in(client, "/profile")
    page = client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert page.status_code == 200 and 'method="post"' in page.get_data(as_text=True)
    assert client.get("/whoami").status_code == 200
    refused = client.post("/logout", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 400
    assert client.get("/whoami").status_code == 200
    confirmed = client.post("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert confirmed.status_code == 302
    assert client.get("/whoami").status_code == 302


def test_a_relative_redirect_uri_is_built_from_the_request(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    from conftest import APP_ORIGIN

    app = make_app(redirect_uri="/auth/redirect", flask_config={"SERVER_NAME": urlsplit(APP_ORIGIN).netloc})
    client = app.test_client()
    auth_uri = sign_in.start(client, "/whoami")
    assert query_of(auth_uri)["redirect_uri"] == APP_ORIGIN + "/auth/redirect"
    assert sign_in.finish(client, idp.sign_in(auth_uri, login="rel")).location == "/whoami"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x",
        "\t//evil",
    ],
)
def test_hostile_next_targets_land_on_the_root(app: Flask, sign_in: SignIn, idp: LocalProvider, target: str) -> None:
    client = app.test_client()
    back = sign_in(client, "/login?" + urlencode({"next": target}))
    assert back.status_code == 302 and back.location in ("/", "/%0d%0aSet-Cookie:x")


def test_login_refuses_scopes_no_view_asks_for(app: Flask) -> None:
    response = app.test_client().get("/login?scopes=Mail.ReadWrite")
    assert response.status_code == 400
    assert "scopes this app does not use" in response.get_data(as_text=True)


def test_callback_response_keeps_the_code_out_of_referers(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    response = sign_in.finish(client, idp.sign_in(sign_in.start(client, "/profile")))
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert path_and_query(response.location) == "/profile"


def test_roles_let_holders_in_and_give_others_a_403_page(app: Flask, sign_in: SignIn) -> None:
    admin, plain = app.test_client(), app.test_client()
    sign_in(admin, "/admin", login="admin")
    assert admin.get("/admin").get_json() == {"roles": ["Admin"]}
    sign_in(plain, "/profile", login="plain")
    refused = plain.get("/admin")
    assert refused.status_code == 403
    assert "does not have a role" in refused.get_data(as_text=True)
    assert plain.get("/admin", headers={"Accept": "application/json"}).get_json()["error"] == "insufficient_role"
    assert plain.get("/profile").status_code == 200


def test_sign_ins_started_at_the_same_instant_in_one_browser_all_complete(
    live_app: LiveServer, idp: LocalProvider
) -> None:
    """Tabs restored together start their sign-ins in parallel; none may lose another's."""
    browser = requests.Session()
    barrier = threading.Barrier(4)
    starts: dict[int, str] = {}

    def start(index: int) -> None:
        barrier.wait(5)
        starts[index] = idp.auth_uri_from(browser, f"{live_app.url}/login?next=/whoami%3Ftab%3D{index}")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(starts) == [0, 1, 2, 3]
    for index, auth_uri in sorted(starts.items()):
        back = idp.back_to_app(browser, idp.sign_in(auth_uri, login="tabby"))
        assert back.status_code == 302 and back.headers["Location"] == f"/whoami?tab={index}", back.text[:200]


def test_an_overlong_return_address_costs_only_itself(app: Flask, sign_in: SignIn, idp: LocalProvider) -> None:
    client = app.test_client()
    first = sign_in.start(client, "/profile?tab=1")
    shuffled = random.Random(7)
    long_next = "/" + "".join(chr(shuffled.randrange(0x4E00, 0x9FFF)) for _ in range(1500))  # does not compress
    back_long = sign_in(client, "/login?" + urlencode({"next": long_next}))
    assert back_long.status_code == 302 and back_long.location == "/"  # signed in, back home
    back_first = sign_in.finish(client, idp.sign_in(first))
    assert back_first.status_code == 302 and back_first.location == "/profile?tab=1"
