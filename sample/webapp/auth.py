"""The extension object, shared by the app factory and the views.

It holds no app: :func:`webapp.create_app` calls ``auth.init_app(app)``, and
identity_flask reads every setting from ``app.config["IDENTITY_*"]``.
"""

from __future__ import annotations

from identity_flask import Auth

auth = Auth()
