"""App roles and allowed tenants, against the local provider: the attack done for real, the safe answer asserted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SignIn, entra_settings, session_cookie
from flask import Flask
from localidp import TENANT_ID, LocalProvider
from testapp import create_app

from identity_flask import Auth, ConfigurationError, TenantNotAllowed, authorization, sign_in_failed

OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
JSON = {"Accept": "application/json"}


@pytest.fixture
def fresh_role_warnings() -> Iterator[None]:
    """Each malformed kind of ``roles`` claim is logged once per process; start counting afresh.

    Nothing public resets that process-wide memory, so this clears the private cache behind it.
    """
    authorization._ignore_roles.cache_clear()
    yield
    authorization._ignore_roles.cache_clear()


@pytest.mark.parametrize(
    ("claims", "roles"),
    [
        ({"roles": ["Admin", "Reader"]}, {"Admin", "Reader"}),
        ({}, set()),
        ({"roles": "Admin"}, set()),
        ({"roles": ["Admin", 1]}, set()),
        ({"roles": {"Admin": True}}, set()),
        ({"roles": 7}, set()),
    ],
)
def test_only_a_list_of_strings_is_roles(claims: dict[str, Any], roles: set[str]) -> None:
    assert authorization.roles_of(claims) == roles


def test_a_string_roles_claim_is_not_matched_letter_by_letter(
    make_app: Callable[..., Flask], sign_in: SignIn, caplog: pytest.LogCaptureFixture, fresh_role_warnings: None
) -> None:
    app = make_app()
    auth: Auth = app.extensions["test_auth"]

    @app.route("/letter")
    @auth.login_required(roles=["A"])
    def letter(*, context: dict[str, Any]) -> str:
        return "in"

    client = app.test_client()
    sign_in(client, "/profile", login="stringroles")  # its id token says "roles": "Admin"
    with caplog.at_level(logging.WARNING, logger="identity_flask"):
        assert client.get("/letter").status_code == 403
        assert client.get("/admin").status_code == 403  # nor is the whole string a role
        assert client.get("/letter", headers=JSON).get_json()["error"] == "insufficient_role"
    assert client.get("/profile").status_code == 200
    warnings = [r for r in caplog.records if "'roles' claim" in r.getMessage()]
    assert len(warnings) == 1 and "str" in warnings[0].getMessage()


@pytest.mark.parametrize("roles", ["Admin", ["Admin", 1]])
def test_roles_that_are_not_a_list_of_names_are_refused_at_decoration(roles: Any) -> None:
    auth = Auth()
    with pytest.raises(ConfigurationError, match=r"login_required\(roles=\.\.\.\)"):
        auth.login_required(roles=roles)


def test_allowed_tenants_let_only_their_users_sign_in(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    failures: list[Exception] = []
    refusing = make_app(allowed_tenants=OTHER_TENANT)
    client = refusing.test_client()
    with sign_in_failed.connected_to(lambda _app, error: failures.append(error), refusing):
        response = sign_in(client, "/profile", login="mallory")
    assert response.status_code == 403
    assert "cannot use this app" in response.get_data(as_text=True)
    assert [type(e) for e in failures] == [TenantNotAllowed]
    assert client.get("/whoami", headers=JSON).status_code == 401  # not signed in

    welcoming = make_app(allowed_tenants=f"{OTHER_TENANT}, {TENANT_ID.upper()}")
    client = welcoming.test_client()
    assert sign_in(client, "/profile", login="alice").location == "/profile"
    assert client.get("/whoami").get_json()["sub"] == "alice"


def test_a_session_from_before_allowed_tenants_changed_is_refused_and_signed_out(
    idp: LocalProvider, sign_in: SignIn, tmp_path: Path
) -> None:
    sessions = str(tmp_path / "sessions")
    before = create_app(sessions, **entra_settings(idp))
    after = create_app(sessions, **entra_settings(idp, allowed_tenants=[OTHER_TENANT]))
    old = before.test_client()
    sign_in(old, "/profile", login="alice")
    cookie = session_cookie(old)
    assert cookie is not None

    client = after.test_client()
    client.set_cookie("session", cookie)
    refused = client.get("/whoami", headers=JSON)
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "tenant_not_allowed"
    assert client.get("/whoami", headers=JSON).status_code == 401  # the session was signed out


@pytest.mark.parametrize(
    ("claims", "allowed", "expected"),
    [
        ({"tid": TENANT_ID}, (), True),
        ({}, (), True),
        ({"tid": TENANT_ID.upper()}, (TENANT_ID,), True),
        ({"tid": TENANT_ID}, (OTHER_TENANT,), False),
        ({}, (TENANT_ID,), False),
        ({"tid": [TENANT_ID]}, (TENANT_ID,), False),
    ],
)
def test_tenant_allowed(claims: dict[str, Any], allowed: tuple[str, ...], expected: bool) -> None:
    assert authorization.tenant_allowed(claims, allowed) is expected


@pytest.mark.parametrize(
    ("authority", "allowed", "warned"),
    [
        ("https://login.microsoftonline.com/common", None, True),
        ("https://login.microsoftonline.com/Organizations/", None, True),
        ("https://login.microsoftonline.com/organizations", [OTHER_TENANT], False),
        (f"https://login.microsoftonline.com/{TENANT_ID}", None, False),
    ],
)
def test_a_multi_tenant_authority_without_allowed_tenants_warns_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, authority: str, allowed: list[str] | None, warned: bool
) -> None:
    app = Flask("multitenant", instance_path=str(tmp_path / "instance"))
    app.config["SECRET_KEY"] = "x"
    with caplog.at_level(logging.WARNING, logger="identity_flask"):
        Auth(
            app,
            client_id="cid",
            client_credential="secret",
            redirect_uri="http://localhost:5000/getAToken",
            authority=authority,
            allowed_tenants=allowed,
        )
    messages = [r.getMessage() for r in caplog.records if "IDENTITY_ALLOWED_TENANTS" in r.getMessage()]
    assert bool(messages) is warned
