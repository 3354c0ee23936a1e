"""Per-app state, kept in ``app.extensions["identity"]``: settings, the MSAL client,
the pending sign-ins, and what is derived from them (origin, known scopes, URLs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_request_context, request, url_for

from . import groups
from .client import IdentityClient
from .config import Authority, Settings
from .downstream import Downstream
from .errors import ConfigurationError
from .pending import PendingSignIns
from .redirects import current_path

#: The kinds of sign-in the login view starts: the usual one, and B2C's other user flows.
FLOW_KINDS = ("sign_in", "edit_profile", "reset_password")

#: The attribute :meth:`~identity_flask.Auth.login_required` sets on a view: the scopes it asks for.
VIEW_SCOPES_ATTR = "_identity_scopes"
#: The attribute :meth:`~identity_flask.Auth.login_required` sets on a view: the groups it asks for.
VIEW_GROUPS_ATTR = "_identity_view_groups"


class AppState:
    """Everything the extension knows about one app.

    :param settings: the app's resolved settings.
    """

    def __init__(self, settings: Settings) -> None:
        #: The resolved settings.
        self.settings = settings
        #: Talks to the provider; one per app and process.
        self.client = IdentityClient(settings)
        #: Tokens for the app itself, to call further APIs (client credentials).
        self.downstream = Downstream.for_settings(settings)
        #: The sign-ins each browser has started and not finished.
        self.pending = PendingSignIns(ttl=settings.sign_in_timeout, keep=settings.max_pending_sign_ins)
        #: Where each setting came from: ``"argument"``, ``"IDENTITY_<NAME>"`` or ``"default"``
        #: (recorded by :func:`identity_flask.cli.register`, shown by ``flask identity doctor``).
        self.setting_sources: dict[str, str] = {}
        self._known: tuple[frozenset[str], frozenset[str]] | None = None

    @property
    def known_scopes(self) -> frozenset[str]:
        """The scopes the login view accepts: the app's ``scopes``, those its
        protected views ask for, and Microsoft Graph's when a view asks for groups.

        Found once, at the first request that needs them, among the app's views,
        which are all registered by then; views may have been decorated before ``init_app``.
        """
        return self._views()[0]

    @property
    def known_groups(self) -> frozenset[str]:
        """Every group the app's protected views ask for (memberships of others are not kept)."""
        return self._views()[1]

    def _views(self) -> tuple[frozenset[str], frozenset[str]]:
        if self._known is None:
            scopes = set(self.settings.scopes)
            found_groups: set[str] = set()
            for view in current_app.view_functions.values():
                # A class-based view's methods may be decorated too.
                classes = getattr(getattr(view, "view_class", None), "__mro__", ())
                methods = [method for klass in classes for method in vars(klass).values()]
                for function in (view, *methods):
                    scopes.update(_marked(function, VIEW_SCOPES_ATTR))
                    found_groups.update(_marked(function, VIEW_GROUPS_ATTR))
            if found_groups:
                scopes.update(groups.graph_scopes(self.settings.graph_endpoint))
            self._known = (frozenset(scopes), frozenset(found_groups))
        return self._known

    def authority(self, kind: str) -> Authority | None:
        """The authority a sign-in of ``kind`` goes to, if one is configured."""
        if kind == "edit_profile":
            return self.settings.edit_profile_authority
        if kind == "reset_password":
            return self.settings.reset_password_authority
        return self.settings.authority

    def origin(self) -> str:
        """This app's scheme and host, as absolute URLs the extension builds use.

        Taken from an absolute ``redirect_uri``, never from the request's ``Host``
        header; with a bare-path ``redirect_uri``, from ``SERVER_NAME``, else from
        the request, whose host Flask checks against ``TRUSTED_HOSTS`` (one of the
        two is required at start-up).
        """
        uri = self.settings.redirect_uri
        if "://" in uri:
            parts = urlsplit(uri)
            return f"{parts.scheme}://{parts.netloc}"
        server_name = current_app.config.get("SERVER_NAME")
        if server_name:
            return f"{request.scheme}://{server_name}"
        return f"{request.scheme}://{request.host}"

    def redirect_uri(self) -> str:
        """The absolute redirect URI, built on :meth:`origin` when only a path is configured."""
        if "://" in self.settings.redirect_uri:
            return self.settings.redirect_uri
        return self.origin() + url_for("identity.auth_response")

    def login_url(
        self,
        next_url: str | None = None,
        scopes: Iterable[str] = (),
        kind: str = "sign_in",
        claims: str | None = None,
        options: Mapping[str, str | int | None] | None = None,
    ) -> str:
        """The URL of the login view, which sends the browser to the provider.

        :param claims: a claims request (base64 of its JSON) to sign in with.
        :param options: sign-in options (``prompt``, ``login_hint``,
            ``domain_hint``, ``max_age``); ``None`` values are left out.
        """
        args: dict[str, str] = {k: str(v) for k, v in (options or {}).items() if v is not None}
        if claims:
            args["claims"] = claims
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
        """The absolute URL users come back to after signing out, on :meth:`origin`."""
        view = self.settings.post_logout_view
        if view is None:
            return self.origin() + (request.script_root or "") + "/"
        if callable(view):
            views = current_app.view_functions.items()
            endpoint = next(
                (name for name, func in views if view in (func, getattr(func, "__wrapped__", None))),
                view.__name__,
            )
        else:
            endpoint = view
        return self.origin() + url_for(endpoint)


def _marked(view: Any, attribute: str) -> set[str]:
    """The scopes or groups marked as ``attribute`` on ``view`` and on every view it wraps (stacked decorators)."""
    found: set[str] = set()
    seen: set[int] = set()
    while view is not None and id(view) not in seen:
        seen.add(id(view))
        marked = getattr(view, attribute, None)
        if isinstance(marked, (tuple, frozenset)):
            found.update(marked)
        view = getattr(view, "__wrapped__", None)
    return found


def _here() -> str | None:
    return current_path() if has_request_context() else None


def current_app_state() -> AppState:
    """The extension's state for the current app."""
    state = current_app.extensions.get("identity")
    if not isinstance(state, AppState):
        raise ConfigurationError(
            "identity_flask is not set up on this app: call auth.init_app(app) (or Auth(app, ...)) first."
        )
    return state
