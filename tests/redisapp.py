"""An app configured from the environment, its sessions in Redis, for gunicorn: the
deployment of ``test_isolation.py`` and of the load benchmark (``benchmarks/load.py``).

    IDENTITY_CLIENT_ID=... IDENTITY_CLIENT_CREDENTIAL=... IDENTITY_AUTHORITY=... \\
    IDENTITY_REDIRECT_URI=http://127.0.0.1:8000/getAToken REDIS_URL=redis://127.0.0.1:6379/0 \\
    SECRET_KEY=... gunicorn --chdir tests redisapp:app

Every ``IDENTITY_*`` variable becomes the setting of that name; sessions live in
the Redis at ``REDIS_URL`` (shared by every worker and instance).
"""

from __future__ import annotations

import os
from typing import Any

import redis
from flask import Flask, jsonify

from identity_flask import Auth


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ["SECRET_KEY"],
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(os.environ["REDIS_URL"]),
    )
    for name, value in os.environ.items():
        if name.startswith("IDENTITY_"):
            app.config[name] = value
    auth = Auth(app)

    @app.route("/")
    def home() -> str:
        return "ok"

    @app.route("/me")
    @auth.login_required
    def me(*, context: dict[str, Any]) -> Any:
        user = context["user"]
        return jsonify(sub=user["sub"], oid=user.get("oid"), name=user.get("name"), pid=os.getpid())

    @app.route("/token")
    @auth.login_required(scopes=["User.Read"])
    def token(*, context: dict[str, Any]) -> Any:
        return jsonify(sub=context["user"]["sub"], access_token=context["access_token"], pid=os.getpid())

    return app


app = create_app()
