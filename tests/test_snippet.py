"""The README's snippet, written as a user would (an ``app_config`` module with
``SESSION_TYPE = "filesystem"``, settings from the environment), signs in."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REDIRECT_URI, SignIn
from localidp import CLIENT_ID, CLIENT_SECRET, LocalProvider

SNIPPET = """
import os
from flask import Flask, render_template
from identity_flask import Auth

app = Flask(__name__)
app.config["SECRET_KEY"] = os.getenv("SECRET_KEY")   # a long random value, the same on every worker
app.config.from_object("app_config")          # e.g. SESSION_TYPE = "filesystem"
auth = Auth(
    app,
    os.getenv("CLIENT_ID"),
    client_credential=os.getenv("CLIENT_SECRET"),
    redirect_uri=os.getenv("REDIRECT_URI"),   # e.g. http://localhost:5000/getAToken
    authority=os.getenv("AUTHORITY"),          # https://login.microsoftonline.com/<tenant>
)

@app.route("/")
@auth.login_required
def index(*, context):
    return render_template("index.html", user=context["user"])

@app.route("/call_api")
@auth.login_required(scopes=["User.Read"])
def call_api(*, context):
    return {"token_type": context["token_type"], "has_token": bool(context["access_token"])}
"""

APP_CONFIG = """
SESSION_TYPE = "filesystem"
SESSION_FILE_DIR = {session_dir!r}
"""

INDEX = """<p>Hello {{ user.name }}</p><a href="{{ url_for('identity.logout') }}">Sign out</a>"""


@pytest.fixture
def user_project(tmp_path: Path, idp: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "index.html").write_text(INDEX)
    (tmp_path / "app_config.py").write_text(APP_CONFIG.format(session_dir=str(tmp_path / "flask_session")))
    for key, value in {
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": REDIRECT_URI,
        "AUTHORITY": idp.entra_authority,
        "SECRET_KEY": "snippet-secret",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("user_app", "app_config"):
        sys.modules.pop(name, None)


def load(project: Path, source: str) -> object:
    (project / "user_app.py").write_text(textwrap.dedent(source))
    return importlib.import_module("user_app").app


def test_the_snippet_signs_in_and_calls_an_api(user_project: Path, sign_in: SignIn) -> None:
    source = SNIPPET
    app = load(user_project, source)
    client = app.test_client()  # type: ignore[attr-defined]
    response = sign_in(client, "/call_api", login="snippet")
    assert response.status_code == 302 and response.location == "/call_api"
    assert client.get("/call_api").get_json() == {"token_type": "Bearer", "has_token": True}
    page = client.get("/").get_data(as_text=True)
    assert "Hello Snippet" in page and 'href="/logout"' in page
    assert (user_project / "flask_session").is_dir()
