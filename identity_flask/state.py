"""Per-app state, kept in ``app.extensions["identity"]``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import current_app, has_request_context, request, url_for

from .client import IdentityClient
from .config import Authority, Settings
from .errors import ConfigurationError
from .redirects import current_path

if TYPE_CHECKING:
    from .extension import Auth

#: The kinds of sign-in the login view starts: the usual one, and B2C's other user flows.
FLOW_KINDS = ("sign_in", "edit_profile", "reset_password")


class AppState:
    """Everything the extension knows about one app.

    :param auth: the :class:`~identity_flask.Auth` object serving this app.
    :param settings: the app's resolved settings.
    """

    def __init__(self, auth: Auth, settings: Settings) -> None:
        #: The extension object, for hooks registered on it.
        self.auth = auth
        #: The resolved settings.
        self.settings = settings
        #: Talks to the provider; one per app and process.
        self.client = IdentityClient(settings)

    def authority(self, kind: str) -> Authority | None:
        """The authority a sign-in of ``kind`` goes to, if one is configured."""
        if kind == "edit_profile":
            return self.settings.edit_profile_authority
        if kind == "reset_password":
            return self.settings.reset_password_authority
        return self.settings.authority

    def redirect_uri(self) -> str:
        """The absolute redirect URI, built from the request when only a path is configured."""
        if "://" in self.settings.redirect_uri:
            return self.settings.redirect_uri
        return url_for("identity.auth_response", _external=True)

    def login_url(self, next_url: str | None = None, scopes: Iterable[str] = (), kind: str = "sign_in") -> str:
        """The URL of the login view, which sends the browser to the provider."""
        args: dict[str, str] = {}
        if next_url:
            args["next"] = next_url
        scopes = list(scopes)
        if scopes:
            args["scopes"] = " ".join(scopes)
        if kind != "sign_in":
            args["flow"] = kind
        return url_for("identity.login", **args)  # type: ignore[arg-type]

    def edit_profile_url(self) -> str | None:
        """Where to send a B2C user to edit their profile, if that user flow is configured."""
        if self.settings.edit_profile_authority is None:
            return None
        return self.login_url(next_url=_here(), kind="edit_profile")

    def reset_password_url(self) -> str | None:
        """Where to send a B2C user to reset their password, if that user flow is configured."""
        if self.settings.reset_password_authority is None:
            return None
        return self.login_url(kind="reset_password")

    def post_logout_url(self) -> str:
        """The absolute URL users come back to after signing out."""
        view = self.settings.post_logout_view
        if view is None:
            return request.url_root
        if callable(view):
            views = current_app.view_functions.items()
            endpoint = next(
                (name for name, func in views if view in (func, getattr(func, "__wrapped__", None))),
                view.__name__,
            )
        else:
            endpoint = view
        return url_for(endpoint, _external=True)


def _here() -> str | None:
    return current_path() if has_request_context() else None


def current_state() -> AppState:
    """The extension's state for the current app."""
    state = current_app.extensions.get("identity")
    if not isinstance(state, AppState):
        raise ConfigurationError(
            "identity_flask is not set up on this app: call auth.init_app(app) (or Auth(app, ...)) first."
        )
    return state
