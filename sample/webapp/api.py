"""The sample's web API, under ``/api``: bearer access tokens, no session.

- ``GET /api/todos`` needs the delegated scope ``Todo.Read``: a user's token,
  as the to-do page gets it when the user signs in;
- ``GET /api/jobs`` needs the app role ``Jobs.Run``: an app's own token
  (client credentials), as ``call_api_as_app.py`` gets it.

Both are protected by :class:`identity_flask.ApiAuth`. A refused request gets
``401`` or ``403`` in JSON with a ``WWW-Authenticate: Bearer`` challenge; a
CORS preflight (``OPTIONS``) gets Flask's answer without a token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from identity_flask import ApiAuth

#: The delegated scope the to-do list needs (exposed under "Expose an API").
TODO_SCOPE = "Todo.Read"
#: The app role the jobs list needs (an app role whose allowed members are applications).
JOBS_ROLE = "Jobs.Run"

#: The to-dos every user sees: the sample keeps no data.
EXAMPLE_TODOS = (
    {"id": 1, "title": "Register the web API and expose the scope Todo.Read", "done": True},
    {"id": 2, "title": "Sign in to the web app", "done": True},
    {"id": 3, "title": "Give the daemon the app role Jobs.Run", "done": False},
)

#: The jobs an app with the role may run.
EXAMPLE_JOBS = (
    {"name": "nightly-report", "schedule": "0 2 * * *"},
    {"name": "purge-expired", "schedule": "30 3 * * 0"},
)


def todos(*, context: dict[str, Any]) -> Response:
    """The caller's to-dos, and who the token says the caller is."""
    claims = context["claims"]
    user = {
        "name": claims.get("name"),
        "preferred_username": claims.get("preferred_username") or claims.get("upn"),
        "sub": claims.get("sub"),
        "oid": claims.get("oid"),
    }
    return jsonify(user=user, scopes=context["scopes"], todos=list(EXAMPLE_TODOS))


def jobs(*, context: dict[str, Any]) -> Response:
    """The jobs, and which application called (``azp`` in v2 tokens, ``appid`` in v1)."""
    claims = context["claims"]
    caller = claims.get("azp") or claims.get("appid")
    return jsonify(caller=caller, app_only=context["app_only"], roles=context["roles"], jobs=list(EXAMPLE_JOBS))


def make_blueprint(api_auth: ApiAuth) -> Blueprint:
    """Build the API's routes, each protected by ``api_auth``."""
    bp = Blueprint("api", __name__, url_prefix="/api")
    bp.add_url_rule("/todos", "todos", api_auth.authorization_required(expected_scopes=[TODO_SCOPE])(todos))
    bp.add_url_rule("/jobs", "jobs", api_auth.authorization_required(roles=[JOBS_ROLE])(jobs))
    return bp
