"""Group-based authorization against the local provider and its Microsoft Graph: groups listed
in the id token, Entra's overage marker resolved from Graph page by page, and every way of
not knowing the user's groups ending in a refusal, never a pass."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from conftest import SignIn, session_cookie, signed_in, stored_session, unique
from flask import Flask
from flask.views import MethodView
from localidp import GRAPH_PAGE_SIZE, LocalProvider, group_id
from servers import RedisServer

from identity_flask import Auth, ConfigurationError
from identity_flask.session_data import GROUPS_KEY, USER_KEY

JSON = {"Accept": "application/json"}
MEMBERSHIPS = "/graph/v1.0/me/transitiveMemberOf"


def graph_reads(idp: LocalProvider) -> int:
    return sum(1 for entry in idp.log() if entry["path"] == MEMBERSHIPS)


@pytest.fixture
def group_app(make_app: Callable[..., Flask], idp: LocalProvider) -> Callable[..., Flask]:
    """An app with views that ask for groups; keyword arguments are settings."""

    def build(flask_config: dict[str, Any] | None = None, **settings: Any) -> Flask:
        app = make_app(flask_config, graph_endpoint=idp.graph_endpoint, **settings)
        auth: Auth = app.extensions["test_auth"]

        @app.route("/first")
        @auth.login_required(groups=[group_id(1)])
        def first(*, context: dict[str, Any]) -> str:
            return "first"

        @app.route("/last")
        @auth.login_required(groups=[group_id(249), group_id(10_000)])
        def last(*, context: dict[str, Any]) -> str:
            return "last"

        @app.route("/nobody")
        @auth.login_required(groups=[group_id(300)])
        def nobody(*, context: dict[str, Any]) -> str:
            return "nobody"

        @app.route("/admins-of-first")
        @auth.login_required(roles=["Admin"], groups=[group_id(1)])
        def admins(*, context: dict[str, Any]) -> str:
            return "admins"

        return app

    return build


def test_groups_listed_in_the_token_let_members_in_and_nobody_else(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(), sign_in, "groups-3")
    assert client.get("/first").text == "first"
    refused = client.get("/last")
    assert refused.status_code == 403
    assert "not a member of a group" in refused.text
    assert client.get("/last", headers=JSON).json["error"] == "insufficient_group"
    assert graph_reads(idp) == 0  # the token's list is the answer


def test_roles_and_groups_together_need_both(group_app: Callable[..., Flask], sign_in: SignIn) -> None:
    app = group_app()
    assert signed_in(app, sign_in, "groupadmin").get("/admins-of-first").text == "admins"
    assert signed_in(app, sign_in, "groups-3").get("/admins-of-first").status_code == 403  # group, no role
    assert signed_in(app, sign_in, "admin").get("/admins-of-first").status_code == 403  # role, no group


def test_an_overage_is_resolved_from_graph_over_three_pages_and_kept_in_the_session(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = group_app()
    client = signed_in(app, sign_in, unique("groups-250"))
    with client.session_transaction() as session:
        claims = session[USER_KEY]
    assert "groups" not in claims and claims["_claim_names"] == {"groups": "src1"}  # Entra's overage marker
    idp.log(clear=True)

    assert client.get("/last").text == "last"  # group 249 is on the third page
    assert graph_reads(idp) == 3 == -(-251 // GRAPH_PAGE_SIZE)  # a directory role and 250 groups
    assert client.get("/first").text == "first"
    assert client.get("/last").text == "last"
    assert graph_reads(idp) == 3  # kept in the session

    kept = stored_session(app, session_cookie(client) or "")
    assert kept is not None
    # Only the groups the app's views ask about are kept, whatever the user's count.
    assert sorted(kept[GROUPS_KEY]["held"]) == sorted([group_id(1), group_id(249)])
    assert len(json.dumps(kept[GROUPS_KEY])) < 300


def test_an_overage_user_outside_the_group_is_refused_after_reading_every_page(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(), sign_in, unique("groups-250"))
    idp.log(clear=True)
    assert client.get("/nobody").status_code == 403
    assert graph_reads(idp) == 3


def test_the_implicit_flow_marker_hasgroups_is_resolved_from_graph_too(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(), sign_in, unique("hasgroups-5"))
    with client.session_transaction() as session:
        assert session[USER_KEY]["hasgroups"] is True
    assert client.get("/first").text == "first"
    assert client.get("/last").status_code == 403
    assert graph_reads(idp) == 1


def test_memberships_are_read_again_once_they_are_older_than_the_setting(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(groups_cache_seconds=1), sign_in, unique("groups-250"))
    idp.log(clear=True)
    assert client.get("/last").status_code == 200
    time.sleep(1.2)
    assert client.get("/last").status_code == 200
    assert graph_reads(idp) == 6


def test_graph_down_is_a_503_never_a_pass(group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider) -> None:
    client = signed_in(group_app(), sign_in, unique("groups-250"))
    idp.fault(MEMBERSHIPS, status=503, times=2)
    page = client.get("/last")
    assert page.status_code == 503 and "could not be read" in page.text
    assert page.headers["Retry-After"]
    answer = client.get("/last", headers=JSON)
    assert answer.status_code == 503 and answer.json["error"] == "temporarily_unavailable"
    assert client.get("/last").text == "last"  # nothing of the failure was kept


def test_a_stalled_graph_is_a_503_within_the_timeout(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(timeout=1), sign_in, unique("groups-250"))
    client.get("/profile", headers=JSON)
    idp.fault(MEMBERSHIPS, delay=3000)
    started = time.monotonic()
    assert client.get("/last").status_code == 503
    assert time.monotonic() - started < 2.5


def test_a_failure_on_a_later_page_refuses_too(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    client = signed_in(group_app(), sign_in, unique("groups-250"))
    # The first page answers as usual (status 0), the second fails.
    idp.fault(MEMBERSHIPS, delay=1, times=1)
    idp.fault(MEMBERSHIPS, status=500, times=1)
    assert client.get("/last").status_code == 503


@pytest.mark.parametrize(
    "page",
    [
        '{"value": [], "@odata.nextLink": "https://graph.attacker.example/v1.0/me/transitiveMemberOf"}',
        '{"value": "not a list"}',
        "<html>a proxy's page</html>",
    ],
    ids=["next-link-off-graph", "value-not-a-list", "html"],
)
def test_a_graph_answer_that_is_not_a_page_of_memberships_is_a_503_injected(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, page: str
) -> None:
    client = signed_in(group_app(), sign_in, unique("groups-250"))
    idp.fault(MEMBERSHIPS, body=page, content_type="application/json")
    assert client.get("/last").status_code == 503
    assert client.get("/last").status_code == 200  # and the next read starts afresh


def test_graph_refusing_is_a_403_injected(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Entra answers 403 when the permission was never consented; the local Graph always consents."""
    client = signed_in(group_app(), sign_in, unique("groups-250"))
    idp.fault(MEMBERSHIPS, status=403)
    page = client.get("/last")
    assert page.status_code == 403 and "could not be read" in page.text
    assert "User.Read" in caplog.text  # the log says what to grant


def test_without_a_token_for_graph_the_user_signs_in_again_and_comes_back(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    login = unique("groups-250")
    client = signed_in(group_app(), sign_in, login)
    idp.revoke_refresh_tokens()  # no token for Graph can be had silently
    answer = client.get("/last?tab=2")
    assert answer.status_code == 302
    asked = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert asked["scopes"] == [f"{idp.graph_endpoint}/User.Read"]
    back = sign_in.finish(client, idp.sign_in(sign_in.start(client, "/last?tab=2"), login=login))
    assert back.headers["Location"] == "/last?tab=2"
    last = client.get("/last?tab=2")
    assert last.text == "last", last.text


def test_a_new_user_in_the_same_browser_does_not_inherit_memberships(
    group_app: Callable[..., Flask], sign_in: SignIn
) -> None:
    app = group_app()
    client = signed_in(app, sign_in, unique("groups-250"))
    assert client.get("/last").status_code == 200
    assert sign_in(client, "/login", login=unique("groups-201")).status_code == 302  # no sign-out between
    assert client.get("/last").status_code == 403  # 201 groups: not a member of group 249


def test_memberships_kept_for_another_user_are_not_used(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    app = group_app()
    member = signed_in(app, sign_in, unique("groups-250"))
    assert member.get("/last").status_code == 200
    with member.session_transaction() as session:
        kept = session[GROUPS_KEY]
    other = signed_in(app, sign_in, unique("groups-201"))
    with other.session_transaction() as session:
        session[GROUPS_KEY] = kept  # a planted copy of another user's memberships
    idp.log(clear=True)
    assert other.get("/last").status_code == 403
    assert graph_reads(idp) == 3


def test_parallel_first_requests_of_an_overage_user_all_get_the_same_answer(
    group_app: Callable[..., Flask], sign_in: SignIn
) -> None:
    app = group_app()
    client = signed_in(app, sign_in, unique("groups-250"))
    cookie = session_cookie(client)

    def visit(path: str) -> int:
        other = app.test_client()
        other.set_cookie("session", cookie or "")
        return other.get(path).status_code

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(visit, ["/last", "/nobody"] * 4))
    assert answers == [200, 403] * 4


def test_a_view_decorated_out_of_sight_of_the_apps_views_is_answered_from_graph_too(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    """A class-based view whose decorators are applied per request (``method_decorators``)."""
    app = make_app(graph_endpoint=idp.graph_endpoint)
    auth: Auth = app.extensions["test_auth"]

    class Resource(MethodView):
        def dispatch_request(self, **kwargs: Any) -> Any:
            guarded = auth.login_required(groups=[group_id(249)])(lambda *, context: "resource")
            return guarded(**kwargs)

    app.add_url_rule("/resource", view_func=Resource.as_view("resource"))
    client = signed_in(app, sign_in, unique("groups-250"))
    assert client.get("/resource").text == "resource"


def test_an_overage_marker_from_another_kind_of_provider_is_a_refusal_without_graph(
    make_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider
) -> None:
    """Only Microsoft Entra's overage is answered by Microsoft Graph; a generic OpenID provider's
    distributed claims are not followed, and no token for Graph is asked of it."""
    app = make_app(authority=None, oidc_authority=idp.oidc_authority, graph_endpoint=idp.graph_endpoint)
    auth: Auth = app.extensions["test_auth"]

    @app.route("/members")
    @auth.login_required(groups=[group_id(1)])
    def members(*, context: dict[str, Any]) -> str:
        return "members"

    client = signed_in(app, sign_in, unique("groups-250"))
    idp.log(clear=True)
    assert client.get("/members").status_code == 403
    assert graph_reads(idp) == 0
    assert not any(entry["path"].endswith("/token") for entry in idp.log())


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("0b8f1f4e-7d0e-4a59-9a4b-6f0f3d1a2b3c", "got the string"),
        (["Finance"], "group object ids"),
        ([42], "group object ids"),
    ],
)
def test_groups_that_are_not_object_ids_are_refused_when_the_view_is_decorated(groups: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Auth().login_required(groups=groups)


def test_a_graph_endpoint_that_is_not_https_is_refused(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigurationError, match="IDENTITY_GRAPH_ENDPOINT"):
        make_app(graph_endpoint="http://graph.example")
    with pytest.raises(ConfigurationError, match="IDENTITY_GROUPS_CACHE_SECONDS"):
        make_app(groups_cache_seconds="soon")


@pytest.mark.redis
def test_memberships_meeting_a_full_redis_are_a_503_not_a_pass(
    group_app: Callable[..., Flask], sign_in: SignIn, idp: LocalProvider, redis_server: RedisServer
) -> None:
    """The Graph answer cannot be kept: the page is refused with a 503, and let in once there is room."""
    store = redis.Redis(port=redis_server.port)
    store.flushall()
    app = group_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": store})
    client = signed_in(app, sign_in, unique("groups-250"))
    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", 1)  # every write that grows memory is refused
    try:
        full = client.get("/last")
        assert full.status_code == 503 and "Traceback" not in full.text
        assert full.headers["Retry-After"]
        store.config_set("maxmemory", "0")
        assert client.get("/last").text == "last"
    finally:
        store.config_set("maxmemory", "0")
