"""Signals sent by the extension, in Flask's blinker namespace.

Receivers take the app as sender, plus keyword arguments::

    from identity_flask import signed_in

    @signed_in.connect_via(app)
    def audit(app, user, **extra):
        app.logger.info("signed in: %s", user.get("preferred_username"))
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Sent after a user signed in, with ``user`` (the id token claims).
signed_in = _signals.signal("identity-signed-in")

#: Sent after a user signed out, with ``user`` (their claims, or ``None`` if the
#: session held no user).
signed_out = _signals.signal("identity-signed-out")

#: Sent when a sign-in ends in an error, with ``error``, the
#: :class:`~identity_flask.errors.IdentityError` about to be raised.
sign_in_failed = _signals.signal("identity-sign-in-failed")

#: Sent when a protected view refuses a request, with ``scopes`` (the scopes the
#: view asked for, possibly empty) and ``reason`` (``"signed_out"`` or
#: ``"consent_required"``).
unauthorized = _signals.signal("identity-unauthorized")
