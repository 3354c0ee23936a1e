"""Sign-in options (``prompt``, ``login_hint``, ``domain_hint``, ``max_age``) per app, per view
and per link, each checked before it reaches the provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from conftest import SignIn
from flask import Flask, url_for
from localidp import LocalProvider

from identity_flask import Auth, ConfigurationError


def provider_query(client: Any, sign_in: SignIn, path: str) -> dict[str, list[str]]:
    """The query of the authorization request the app sends a browser to from ``path``."""
    return parse_qs(urlsplit(sign_in.start(client, path)).query)


def test_a_link_to_the_login_view_carries_the_options_to_the_provider(
    app: Flask, sign_in: SignIn, idp: LocalProvider
) -> None:
    with app.test_request_context():
        link = url_for(
            "identity.login", login_hint="bob@example.test", domain_hint="Contoso.com", prompt="login", next="/profile"
        )
    client = app.test_client()
    auth_uri = sign_in.start(client, link)
    query = parse_qs(urlsplit(auth_uri).query)
    assert query["login_hint"] == ["bob@example.test"]
    assert query["domain_hint"] == ["contoso.com"]
    assert query["prompt"] == ["login"]
    # The provider's sign-in page has the account filled in, and the sign-in works.
    page = idp.browser().get(auth_uri)
    assert 'value="bob@example.test"' in page.text
    assert sign_in.finish(client, idp.sign_in(auth_uri, login="bob")).headers["Location"] == "/profile"


def test_a_view_sends_its_own_options(make_app: Callable[..., Flask], sign_in: SignIn) -> None:
    app = make_app()
    auth: Auth = app.extensions["test_auth"]

    @app.route("/partners")
    @auth.login_required(prompt="select_account", domain_hint="fabrikam.com", login_hint="guest@fabrikam.com")
    def partners(*, context: dict[str, Any]) -> str:
        return "partners"

    query = provider_query(app.test_client(), sign_in, "/partners")
    assert query["domain_hint"] == ["fabrikam.com"]
    assert query["login_hint"] == ["guest@fabrikam.com"]
    assert query["prompt"] == ["select_account"]


def test_the_apps_domain_hint_goes_with_every_sign_in_unless_a_link_says_otherwise(
    make_app: Callable[..., Flask], sign_in: SignIn
) -> None:
    app = make_app(domain_hint="contoso.com")
    client = app.test_client()
    assert provider_query(client, sign_in, "/profile")["domain_hint"] == ["contoso.com"]
    assert provider_query(client, sign_in, "/login?domain_hint=fabrikam.com")["domain_hint"] == ["fabrikam.com"]


def test_without_options_none_is_sent(app: Flask, sign_in: SignIn) -> None:
    query = provider_query(app.test_client(), sign_in, "/profile")
    assert not {"login_hint", "domain_hint", "prompt", "max_age"} & set(query)


@pytest.mark.parametrize(
    "arguments",
    [
        {"login_hint": "bob@example.test\nInjected: header"},
        {"login_hint": "x" * 600},
        {"login_hint": " bob@example.test"},
        {"domain_hint": "contoso.com/evil"},
        {"domain_hint": "contoso..com"},
        {"domain_hint": "-contoso.com"},
        {"domain_hint": "contoso.com&prompt=none"},
        {"prompt": "bogus"},
        {"prompt": "login consent"},
        {"max_age": "-1"},
        {"max_age": "1e9"},
        {"max_age": "99999999999"},
        {"max_age": "9" * 5000},
        {"max_age": "\u0661\u0662\u0663"},
    ],
    ids=lambda a: f"{next(iter(a))}={next(iter(a.values()))[:20]!r}",
)
def test_an_option_the_provider_may_not_be_sent_is_a_400(app: Flask, arguments: dict[str, str]) -> None:
    client = app.test_client()
    page = client.get("/login?" + urlencode({"next": "/profile", **arguments}))
    assert page.status_code == 400
    assert "not valid" in page.text
    assert client.get("/login?" + urlencode(arguments), headers={"Accept": "application/json"}).json["error"] == (
        "invalid_request"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prompt": "bogus"}, "prompt"),
        ({"domain_hint": "not a domain"}, "domain_hint"),
        ({"login_hint": "a\tb"}, "login_hint"),
    ],
)
def test_a_views_options_are_checked_when_it_is_decorated(arguments: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Auth().login_required(**arguments)


def test_the_apps_domain_hint_is_checked_at_start_up(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigurationError, match="IDENTITY_DOMAIN_HINT"):
        make_app(domain_hint="contoso.com/x")
