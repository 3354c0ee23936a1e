"""The sample's pages: who is signed in, all their claims, and calls to APIs as the user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, current_app, render_template, url_for
from werkzeug.local import LocalProxy

from . import downstream
from .auth import auth

#: Claims the home page shows, when the token has them.
SUMMARY_CLAIMS = ("name", "preferred_username", "oid", "tid", "roles")


def index() -> str:
    """Home: who is signed in, or a link to sign in. Open to everyone."""
    user = auth.get_user()
    summary = {k: user[k] for k in SUMMARY_CLAIMS if user and k in user}
    return render_template("index.html", user=user, summary=summary)


def claims(*, context: dict[str, Any]) -> str:
    """Every claim of the signed-in user's id token."""
    return render_template("claims.html", user=context["user"], claims=sorted(context["user"].items()))


def call_api(*, context: dict[str, Any]) -> str:
    """Call the configured API as the signed-in user and show its answer."""
    endpoint = current_app.config["API_ENDPOINT"]
    result = downstream.call(endpoint, context["access_token"])
    return render_template("api.html", user=context["user"], endpoint=endpoint, scopes=context["scopes"], result=result)


def todos(*, context: dict[str, Any]) -> str:
    """Call the sample's own web API (``/api/todos``) as the signed-in user and show the to-dos.

    The API is this app unless ``WEB_API_URL`` names another deployment of it.
    """
    base = current_app.config["WEB_API_URL"]
    endpoint = f"{base}/api/todos" if base else url_for("api.todos", _external=True)
    result = downstream.call(endpoint, context["access_token"])
    items = result.body.get("todos") if result.ok and isinstance(result.body, dict) else None
    return render_template(
        "todos.html", user=context["user"], endpoint=endpoint, scopes=context["scopes"], result=result, items=items
    )


def make_blueprint(api_scopes: Sequence[str], todo_scopes: Sequence[str]) -> Blueprint:
    """Build the pages. The API page asks for ``api_scopes``, the to-do page for
    ``todo_scopes`` (the web API's scope); both come from the settings."""
    bp = Blueprint("pages", __name__)
    bp.add_url_rule("/", "index", index)
    bp.add_url_rule("/claims", "claims", auth.login_required(claims))
    bp.add_url_rule("/call-api", "call_api", auth.login_required(scopes=list(api_scopes))(call_api))
    bp.add_url_rule("/todos", "todos", auth.login_required(scopes=list(todo_scopes))(todos))
    bp.app_context_processor(_links)
    return bp


def _links() -> dict[str, Any]:
    # Read when a template uses it, not for every page rendered: the identity error
    # pages (a 503 when the session store is down, say) must render without a session.
    return {"edit_profile_url": auth.get_edit_profile_url(), "current_user": LocalProxy(auth.get_user)}
