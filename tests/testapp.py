"""The Flask app the integration and browser tests sign in to."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cachelib.file import FileSystemCache
from flask import Flask, jsonify, render_template_string, request, session

from identity_flask import Auth, ClaimsChallenge

#: What a further API answers when it wants a token issued after a moment (base64 JSON claims).
CAE_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
CAE_CHALLENGE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    'error="insufficient_claims", '
    'claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTcwMDAwMDAwMCJ9fX0="'
)

PAGE = """<!DOCTYPE html><html><head><title>{{ title }}</title></head><body>
<h1>{{ title }}</h1>
{% if user %}<p id="user">Signed in as <span id="name">{{ user.name }}</span>
 (<span id="username">{{ user.preferred_username }}</span>)</p>
<a id="logout" href="{{ url_for('identity.logout') }}">Sign out</a>{% else %}
<p id="anonymous">Not signed in</p><a id="login" href="{{ url_for('identity.login') }}">Sign in</a>{% endif %}
{% if token %}<p id="token-length">{{ token|length }}</p>{% endif %}
</body></html>"""


def create_app(
    session_dir: str, *, auth: Auth | None = None, flask_config: dict[str, Any] | None = None, **settings: Any
) -> Flask:
    """An app with public, protected, scoped, async and API views.

    :param flask_config: more ``app.config`` keys, set before the extension.
    :param settings: ``IDENTITY_*`` keys without the prefix, e.g. ``authority=...``.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test-only-secret",
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(session_dir, threshold=0),
    )
    app.config.update(flask_config or {})
    for name, value in settings.items():
        app.config["IDENTITY_" + name.upper()] = value
    auth = auth or Auth()
    auth.init_app(app)

    @app.route("/")
    def home() -> str:
        return render_template_string(PAGE, title="Home", user=auth.get_user())

    @app.route("/slow")
    def slow() -> str:
        time.sleep(float(request.args.get("seconds", "0.5")))
        return render_template_string(PAGE, title="Slow", user=auth.get_user())

    @app.route("/pending-sign-ins")
    def pending_sign_ins() -> Any:
        """How many sign-ins this browser has started and not finished, as the extension reads them."""
        return jsonify(count=app.extensions["identity"].pending.count())

    @app.route("/note")
    def note() -> str:
        """Keep a note in the session (a cart, a flash message), or show it."""
        if "text" in request.args:
            session["note"] = request.args["text"]
        return str(session.get("note", ""))

    @app.route("/slow-note")
    def slow_note() -> str:
        """Load the session, wait, then write to it: a slow request racing others."""
        seen = str(session.get("note", ""))
        time.sleep(float(request.args.get("seconds", "0.5")))
        session["note"] = request.args.get("text", "late")
        return seen

    @app.route("/signed-out")
    def signed_out_page() -> str:
        return render_template_string(PAGE, title="Signed out", user=auth.get_user())

    @app.route("/profile")
    @auth.login_required
    def profile(*, context: dict[str, Any]) -> str:
        return render_template_string(PAGE, title="Profile", user=context["user"])

    @app.route("/graph")
    @auth.login_required(scopes=["User.Read"])
    def graph(*, context: dict[str, Any]) -> str:
        return render_template_string(PAGE, title="Graph", user=context["user"], token=context["access_token"])

    @app.route("/files")
    @auth.login_required(scopes=["Files.Read"])
    def files(*, context: dict[str, Any]) -> Any:
        return jsonify(
            scopes=context["scopes"],
            expires_in=context["expires_in"],
            keys=sorted(context),
            access_token=context["access_token"],
        )

    @app.route("/whoami")
    @auth.login_required
    def whoami(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["user"]["sub"], name=context["user"].get("name"))

    @app.route("/needs-claims")
    @auth.login_required(scopes=["User.Read"])
    def needs_claims(*, context: dict[str, Any]) -> Any:
        # A further API that answers the first call with a claims challenge, as Entra's
        # continuous access evaluation does after a policy change.
        if not session.get("challenged"):
            session["challenged"] = True
            raise ClaimsChallenge.from_header(CAE_CHALLENGE) or AssertionError("not a challenge")
        return jsonify(sub=context["user"]["sub"], access_token=context["access_token"])

    @app.route("/local-api")
    @auth.login_required(scopes=["api://local/access"])
    def local_api(*, context: dict[str, Any]) -> Any:
        return jsonify(access_token=context["access_token"], scopes=context["scopes"])

    @app.route("/token")
    @auth.login_required(scopes=["User.Read"])
    def token(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["user"]["sub"], access_token=context["access_token"])

    @app.route("/admin")
    @auth.login_required(roles=["Admin", "Owner"])
    def admin(*, context: dict[str, Any]) -> Any:
        return jsonify(roles=context["user"]["roles"])

    @app.route("/async")
    @auth.login_required
    async def async_view(*, context: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        return jsonify(sub=context["user"]["sub"], view="async")

    items = {"report": "quarterly figures"}
    app.extensions["test_items"] = items

    @app.route("/items/<name>", methods=["GET", "DELETE", "OPTIONS"])
    @auth.login_required(roles=["Admin"])
    def item(name: str, *, context: dict[str, Any]) -> Any:
        if request.method == "DELETE":
            items.pop(name, None)
            return jsonify(deleted=name)
        return jsonify(item=items.get(name))

    @app.route("/cors", methods=["GET", "OPTIONS"])
    @auth.login_required
    def cors(*, context: dict[str, Any]) -> Any:
        return jsonify(user=context["user"])

    app.extensions["test_auth"] = auth
    return app
