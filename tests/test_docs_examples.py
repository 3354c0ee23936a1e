"""Every ```python block in the docs runs, and the apps they build sign in against the local provider.

How blocks are run, per page:

- most pages are scripts: their blocks run in order in one namespace, in a
  fresh working directory (so ``Flask(__name__)`` finds its templates and
  instance folder there), with ``CLIENT_ID``, ``CLIENT_SECRET``,
  ``REDIRECT_URI`` and ``AUTHORITY`` set to the local provider's values;
- on pages of fragments (``index``, ``authorities``) each block runs alone,
  given a fresh ``app``, ``client_id``, ``secret``, ``redirect_uri`` and ``Auth``;
- on ``errors``, ``hooks`` and ``authorization`` the blocks extend a running test app, given as
  ``app`` and ``auth``;
- on ``testing`` each block starts with a ``# <file>.py`` line: the files are
  written to a project and its tests are run by pytest.

A block fenced as ```{code-block} python is an illustration and is not run.
"""

from __future__ import annotations

import base64
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import REDIRECT_URI, LiveServer, SignIn
from flask import Flask, request
from localidp import CLIENT_ID, CLIENT_SECRET, LocalProvider, free_port

from identity_flask import Auth

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(python|html)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)

SCRIPT_PAGES = ("quickstart", "configuration", "scopes", "factories", "sessions")
FRAGMENT_PAGES = ("index", "authorities")
EXTENDING_PAGES = ("errors", "hooks", "authorization")
FILE_PAGES = ("testing",)
RUN_PAGES = SCRIPT_PAGES + FRAGMENT_PAGES + EXTENDING_PAGES + FILE_PAGES


def blocks(page: str, language: str = "python") -> list[str]:
    text = (DOCS / f"{page}.md").read_text()
    return [body for lang, body in FENCE.findall(text) if lang == language]


def run(code: str, namespace: dict[str, Any], page: str) -> None:
    exec(compile(code, f"docs/{page}.md", "exec"), namespace)


@pytest.fixture
def docs_env(idp: LocalProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the docs tell readers to set, pointing at the local provider."""
    monkeypatch.setenv("CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("REDIRECT_URI", REDIRECT_URI)
    monkeypatch.setenv("AUTHORITY", idp.entra_authority)
    monkeypatch.setenv("SECRET_KEY", "docs-example-secret")
    for name in ("CLIENT_ID", "CLIENT_CREDENTIAL", "REDIRECT_URI", "AUTHORITY"):
        monkeypatch.delenv(f"FLASK_IDENTITY_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _with_secret_key(app: Flask) -> Flask:
    app.config["SECRET_KEY"] = "docs-fragment-secret"
    return app


def run_script(page: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_{page}"}
    for code in blocks(page):
        run(code, namespace, page)
    return namespace


def test_every_page_with_python_blocks_is_covered() -> None:
    pages = {p.stem for p in DOCS.glob("*.md") if blocks(p.stem)}
    assert pages - {"deploying"} == set(RUN_PAGES)


def test_quickstart(docs_env: Path, sign_in: SignIn) -> None:
    (docs_env / "templates").mkdir()
    (docs_env / "templates" / "index.html").write_text(blocks("quickstart", "html")[0])
    app = run_script("quickstart")["app"]
    client = app.test_client()
    sign_in(client, "/", login="alice")
    page = client.get("/").get_data(as_text=True)
    assert "Hello Alice (alice@example.test)" in page
    assert 'href="/logout"' in page


def test_configuration(docs_env: Path, sign_in: SignIn) -> None:
    app = run_script("configuration")["app"]
    assert app.extensions["identity"].settings.client_id == CLIENT_ID
    assert app.test_client().get("/login").status_code == 302


def test_scopes(docs_env: Path, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch) -> None:
    api = Flask("docs_api")

    @api.route("/v1.0/me")
    def me() -> dict[str, str]:
        return {"authorization": request.headers.get("Authorization", "")}

    with LiveServer(api, free_port()) as server:
        monkeypatch.setenv("API_ENDPOINT", f"{server.url}/v1.0/me")
        namespace = run_script("scopes")
        client = namespace["app"].test_client()
        sign_in(client, "/me", login="erin")
        body = client.get("/me").get_json()
    assert body["authorization"].startswith("Bearer ") and len(body["authorization"]) > 30
    consent = client.get("/files")
    assert consent.status_code == 302 and "scopes=Files.Read" in consent.location
    settings = namespace["calendar_app"].extensions["identity"].settings
    assert settings.scopes == ("User.Read", "Calendars.Read")


def test_factories(docs_env: Path, sign_in: SignIn) -> None:
    namespace = run_script("factories")
    app = namespace["create_app"]()
    client = app.test_client()
    sign_in(client, "/", login="bob")
    assert client.get("/").get_data(as_text=True) == "Hello Bob"
    logout = client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert (
        "post_logout_redirect_uri=" + quote(REDIRECT_URI.replace("/getAToken", "/signed-out"), safe="")
        in logout.location
    )
    with pytest.raises(Exception, match="already set up"):
        namespace["auth"].init_app(app)


def test_sessions(docs_env: Path) -> None:
    namespace = run_script("sessions")
    assert type(namespace["app"].session_interface).__name__ == "RedisSessionInterface"


@pytest.mark.parametrize("page", FRAGMENT_PAGES)
def test_fragments(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    kinds = []
    for code in blocks(page):
        namespace: dict[str, Any] = {
            "__name__": f"docs_{page}",
            "app": _with_secret_key(Flask(f"docs_{page}")),
            "client_id": "00000000-0000-0000-0000-000000000000",
            "secret": "placeholder-secret",
            "redirect_uri": "http://localhost:5000/getAToken",
            "Auth": Auth,
        }
        run(code, namespace, page)
        kinds.append(namespace["app"].extensions["identity"].settings.authority.kind)
    if page == "authorities":
        assert kinds == ["entra", "entra", "entra", "oidc", "b2c", "oidc"]


@pytest.fixture
def extended(make_app: Callable[..., Flask]) -> Callable[[str], dict[str, Any]]:
    def extend(page: str) -> dict[str, Any]:
        app = make_app()
        namespace: dict[str, Any] = {"__name__": f"docs_{page}", "app": app, "auth": app.extensions["test_auth"]}
        for code in blocks(page):
            run(code, namespace, page)
        return namespace

    return extend


def test_errors(extended: Callable[[str], dict[str, Any]], sign_in: SignIn) -> None:
    app = extended("errors")["app"]
    client = app.test_client()
    forged = client.get("/getAToken?code=stolen&state=forged")
    assert forged.status_code == 400
    assert forged.get_data(as_text=True).startswith("<h1>Sign-in failed</h1><p>This sign-in response")
    refused = client.get("/graph")
    assert refused.status_code == 401
    assert 'href="/login?next=/&amp;scopes=User.Read">Please sign in' in refused.get_data(as_text=True)
    assert client.get("/profile").get_data(as_text=True) == '<a href="/login?next=/">Please sign in</a>'
    admin = app.test_client()
    sign_in(admin, "/login", login="admin")  # the page's handler answers protected views with 401
    assert admin.get("/reports").get_data(as_text=True) == "Welcome, Ada Admin"


def test_errors_handler_takes_every_identity_error(extended: Callable[[str], dict[str, Any]], sign_in: SignIn) -> None:
    client = extended("errors")["app"].test_client()
    sign_in(client, "/login", login="alice")
    denied = client.get("/reports")
    assert denied.status_code == 403
    assert denied.get_data(as_text=True).startswith("<h1>Access denied</h1>")


def test_authorization(extended: Callable[[str], dict[str, Any]], sign_in: SignIn) -> None:
    client = extended("authorization")["app"].test_client()
    sign_in(client, "/login", login="alice")  # in no group, signed in without max_age or acrs
    assert client.get("/ledger").status_code == 403
    assert client.get("/payroll").status_code == 302  # no auth_time: signs in again first
    transfer = parse_qs(urlsplit(client.get("/transfer").headers["Location"]).query)
    assert (transfer["max_age"], transfer["next"]) == (["300"], ["/transfer"])
    salaries = parse_qs(urlsplit(client.get("/salaries").headers["Location"]).query)
    assert json.loads(base64.b64decode(salaries["claims"][0])) == {
        "id_token": {"acrs": {"essential": True, "value": "c1"}}
    }


def test_hooks(extended: Callable[[str], dict[str, Any]], sign_in: SignIn) -> None:
    namespace = extended("hooks")
    client = namespace["app"].test_client()
    assert "Sign in" in client.get("/welcome").get_data(as_text=True)
    sign_in(client, "/profile", login="carol")
    assert client.get("/welcome").get_data(as_text=True) == "Hello Carol"
    client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"})
    sign_in.start(client, "/profile")
    client.get("/getAToken?code=stolen&state=forged")
    assert namespace["audit"] == [
        ("signed in", "carol@example.test"),
        ("signed out", "carol@example.test"),
        ("failed", "invalid_state"),
    ]


def test_testing_page_runs_as_a_users_project(pytester: pytest.Pytester) -> None:
    files = {}
    for code in blocks("testing"):
        first, _, rest = code.partition("\n")
        match = re.fullmatch(r"# (\w+\.py)", first.strip())
        assert match, f"a block on the testing page must start with '# <file>.py', got {first!r}"
        files[match.group(1)] = rest
    assert {"conftest.py", "myapp.py"} <= set(files)
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    for name, content in files.items():
        pytester.path.joinpath(name).write_text(textwrap.dedent(content))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    tests = sum(len(re.findall(r"^def test_", c, re.M)) for c in files.values())
    result.assert_outcomes(passed=tests)
