"""The README's snippet, copied as a reader would into ``user_app.py`` with its
settings in the environment, runs as written and signs in."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REDIRECT_URI, SignIn
from localidp import CLIENT_ID, CLIENT_SECRET, LocalProvider

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    """The first Python block of the README, exactly as a reader copies it."""
    match = re.search(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)
    assert match is not None, "the README has no Python snippet"
    return match.group(1)


@pytest.fixture
def user_project(tmp_path: Path, idp: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
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
    sys.modules.pop("user_app", None)


def load(project: Path, source: str) -> object:
    (project / "user_app.py").write_text(textwrap.dedent(source))
    return importlib.import_module("user_app").app


def test_the_snippet_signs_in_and_calls_an_api(user_project: Path, sign_in: SignIn) -> None:
    app = load(user_project, readme_snippet())
    client = app.test_client()  # type: ignore[attr-defined]
    response = sign_in(client, "/call_api", login="snippet")
    assert response.status_code == 302 and response.location == "/call_api"
    assert client.get("/call_api").get_json() == {"token_type": "Bearer", "has_token": True}
    page = client.get("/").get_data(as_text=True)
    assert "Hello Snippet" in page and 'href="/logout"' in page
    assert (user_project / "instance" / "identity_sessions").is_dir()  # the default file store
