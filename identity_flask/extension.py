"""The :class:`Auth` extension object."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, request, session
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import InternalServerError
from werkzeug.local import LocalProxy

from . import authorization, config, session_data, signals
from .app_state import VIEW_SCOPES_ATTR, AppState, current_app_state
from .errors import AccessDenied, ClaimsChallenge, ConfigurationError, NotSignedIn, RoleRequired, TenantNotAllowed
from .negotiation import wants_html
from .pending import PendingSignIns
from .redirects import current_path
from .session_store import setup_sessions, store_outage_page
from .views import make_blueprint, no_store_after_callback

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
UnauthorizedHandler = Callable[..., ResponseReturnValue]


def _current_user() -> dict[str, Any] | None:
    return session_data.get_user(session)


#: The signed-in user's id token claims, or ``None``; usable in any view or template.
current_user: dict[str, Any] | None = LocalProxy(_current_user)  # type: ignore[assignment]


class Auth:
    """Signs users in with Microsoft Entra ID, External ID, Azure AD B2C or any
    OpenID Connect provider, and gets access tokens for the APIs they call.

    Every argument may instead come from ``app.config`` as ``IDENTITY_<NAME>``
    (``IDENTITY_CLIENT_ID``, ``IDENTITY_AUTHORITY``, ...); an argument given
    here wins. One object may serve several apps.

    :param app: the app, or ``None`` to call :meth:`init_app` later.
    :param client_id: the Application (client) ID of the app registration.
    :param client_credential: a client secret, or a certificate dict as MSAL
        takes it (``{"private_key_pfx_path": ..., "passphrase": ...}``, ...).
    :param redirect_uri: the registered redirect URI, e.g.
        ``http://localhost:5000/getAToken``; its path becomes the callback
        route, and login and logout are served beside it. A bare path is
        also accepted: the full URL is then built from each request.
    :param authority: an Entra ID or External ID authority,
        ``https://login.microsoftonline.com/<tenant>`` or
        ``https://<subdomain>.ciamlogin.com/<subdomain>.onmicrosoft.com``.
    :param oidc_authority: any OpenID Connect issuer (or an External ID custom
        domain ``https://<domain>/<tenant-id>/v2.0``).
    :param b2c_tenant_name: the B2C tenant, e.g. ``contoso``.
    :param b2c_signup_signin_user_flow: the B2C sign-up-or-sign-in user flow.
    :param b2c_edit_profile_user_flow: the B2C profile editing user flow.
    :param b2c_reset_password_user_flow: the B2C password reset user flow.
    :param b2c_authority_host: the B2C sign-in host, when it is not
        ``https://<tenant>.b2clogin.com`` (a custom domain).
    :param post_logout_view: the view (function or endpoint name) users land
        on after signing out; the app's root by default.
    :param prompt: the ``prompt`` sent with each sign-in, e.g. ``select_account``.
    :param scopes: scopes to consent to at every sign-in, beyond ``openid``.
    :param response_mode: ``query`` (default) or ``form_post``.
    :param timeout: seconds to wait for the provider before answering 503.
    :param allowed_tenants: the tenant ids (``tid``) whose users may sign in;
        every tenant when unset. Set it for a ``/common`` or ``/organizations``
        authority.
    """

    def __init__(
        self,
        app: Flask | None = None,
        client_id: str | None = None,
        *,
        client_credential: Any = None,
        redirect_uri: str | None = None,
        authority: str | None = None,
        oidc_authority: str | None = None,
        b2c_tenant_name: str | None = None,
        b2c_signup_signin_user_flow: str | None = None,
        b2c_edit_profile_user_flow: str | None = None,
        b2c_reset_password_user_flow: str | None = None,
        b2c_authority_host: str | None = None,
        post_logout_view: str | Callable[..., Any] | None = None,
        prompt: str | None = None,
        scopes: Iterable[str] | None = None,
        response_mode: str | None = None,
        timeout: float | None = None,
        allowed_tenants: Iterable[str] | None = None,
    ) -> None:
        self._given: dict[str, Any] = {
            "client_id": client_id,
            "client_credential": client_credential,
            "redirect_uri": redirect_uri,
            "authority": authority,
            "oidc_authority": oidc_authority,
            "b2c_tenant_name": b2c_tenant_name,
            "b2c_signup_signin_user_flow": b2c_signup_signin_user_flow,
            "b2c_edit_profile_user_flow": b2c_edit_profile_user_flow,
            "b2c_reset_password_user_flow": b2c_reset_password_user_flow,
            "b2c_authority_host": b2c_authority_host,
            "post_logout_view": post_logout_view,
            "prompt": prompt,
            "scopes": scopes if scopes is None or isinstance(scopes, str) else tuple(scopes),
            "response_mode": response_mode,
            "timeout": timeout,
            "allowed_tenants": (
                tuple(allowed_tenants)
                if allowed_tenants is not None and not isinstance(allowed_tenants, str)
                else allowed_tenants
            ),
        }
        self._unauthorized_handler: UnauthorizedHandler | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Set the extension up on ``app``: settings, session store, blueprint.

        :raises ConfigurationError: a setting is missing or conflicts; the
            message names it.
        """
        if "identity" in app.extensions:
            raise ConfigurationError("identity_flask is already set up on this app; call init_app once per app.")
        settings = config.resolve(app, self._given)
        if settings.authority.multi_tenant and not settings.allowed_tenants:
            logger.warning(
                "The authority %s lets users of any organization sign in, and no allowed_tenants "
                "(IDENTITY_ALLOWED_TENANTS) are set: an admin of any tenant holds the roles their own "
                "tenant grants. List the tenant ids this app serves.",
                settings.authority.url,
            )
        setup_sessions(
            app,
            form_post=settings.response_mode == "form_post",
            secure_redirect=settings.redirect_uri.startswith("https://"),
        )
        host_pinned = app.config.get("TRUSTED_HOSTS") or app.config.get("SERVER_NAME")
        if "://" not in settings.redirect_uri and not host_pinned:
            raise ConfigurationError(
                f"The redirect URI {settings.redirect_uri!r} is a bare path, so its host would come from each "
                "request's Host header, which any client can set. Set TRUSTED_HOSTS (e.g. "
                "app.config['TRUSTED_HOSTS'] = ['myapp.azurewebsites.net']) or SERVER_NAME, or give "
                "an absolute redirect_uri (IDENTITY_REDIRECT_URI)."
            )
        PendingSignIns.check(app)
        app.after_request(no_store_after_callback(settings.redirect_path))
        if settings.redirect_uri.startswith("http://") and not _is_local(settings.redirect_uri):
            logger.warning(
                "The redirect URI %s is http://; Entra ID accepts that only for localhost. "
                "Behind a TLS-terminating proxy (App Service), apply werkzeug's ProxyFix.",
                settings.redirect_uri,
            )
        if settings.store_outage_page:
            # The store is read before any view runs and written after, so its failures
            # reach Flask as 500s; this handler makes an outage a 503 page and leaves every
            # other 500 to Flask. It takes the app's 500 slot: see IDENTITY_STORE_OUTAGE_PAGE.
            app.register_error_handler(InternalServerError, store_outage_page)
        app.extensions["identity"] = AppState(settings)
        blueprint = make_blueprint(settings)
        app.register_blueprint(blueprint)
        csrf = app.extensions.get("csrf")
        if csrf is not None and hasattr(csrf, "exempt"):
            # The provider's form_post and the sign-out confirmation carry no CSRF token of
            # the app's; both are protected by their own checks (state, same-origin).
            csrf.exempt(blueprint)

    @overload
    def login_required(self, function: F, /) -> F: ...

    @overload
    def login_required(
        self, function: None = None, /, *, scopes: Iterable[str] | None = None, roles: Iterable[str] | None = None
    ) -> Callable[[F], F]: ...

    def login_required(
        self,
        function: F | None = None,
        /,
        *,
        scopes: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
    ) -> F | Callable[[F], F]:
        """Let only signed-in users reach a view, which gets a ``context`` keyword.

        ``context["user"]`` holds the user's id token claims. With ``scopes``,
        ``context`` also holds ``access_token``, ``token_type``,
        ``expires_in`` and ``scopes``: a token from the user's cache, refreshed
        when it expired. When no token can be had silently, the user signs in
        again to consent to the scopes, and comes back.

        With ``roles``, the user must hold at least one of these app roles (the
        id token's ``roles`` claim, as Entra ID issues them for app roles
        assigned to the user); otherwise the answer is a 403
        :class:`~identity_flask.errors.RoleRequired` page.

        A signed-out browser is sent to sign in; a caller that does not want
        HTML (``Accept: application/json``, XHR) gets 401 with a JSON body.
        ``OPTIONS`` requests (CORS preflights) get Flask's default answer, the
        allowed methods with an empty body, without calling the view: no method
        skips the sign-in or role check. An app that wants its own preflight
        answer registers an undecorated view for ``OPTIONS`` on the same URL.

        Usage::

            @app.route("/")
            @auth.login_required
            def index(*, context):
                return render_template("index.html", user=context["user"])

            @app.route("/call_api")
            @auth.login_required(scopes=["User.Read"])
            def call_api(*, context):
                ...  # context["access_token"]
        """
        wanted = config.view_scopes(scopes)
        allowed = authorization.required_roles(roles)
        if function is None:
            return functools.partial(self.login_required, scopes=wanted, roles=allowed)
        view = function

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method == "OPTIONS":
                # A CORS preflight carries no credentials: answer it as Flask does by
                # default (the allowed methods, no body), never with the view's code.
                return current_app.make_default_options_response()
            run = current_app.ensure_sync(view)
            context = self._context(wanted, allowed)
            if context is None:
                reason = "signed_out" if session_data.get_user(session) is None else "consent_required"
                return self.unauthorized(reason=reason, scopes=wanted)
            try:
                return run(*args, context=context, **kwargs)
            except ClaimsChallenge as challenge:
                return self._sign_in_again(challenge, challenge.scopes or wanted)

        setattr(wrapper, VIEW_SCOPES_ATTR, wanted)  # the login view accepts these scopes
        return wrapper

    def _context(self, scopes: tuple[str, ...], roles: frozenset[str]) -> dict[str, Any] | None:
        user = session_data.get_user(session)
        if user is None:
            return None
        state = current_app_state()
        try:
            authorization.check_tenant(user, state.settings.allowed_tenants)
        except TenantNotAllowed:
            session_data.sign_out(session)  # signed in before allowed_tenants changed
            raise
        if roles and not roles.intersection(authorization.roles_of(user)):
            raise RoleRequired("Your account does not have a role this page needs.")
        if not scopes:
            return {"user": user}
        token = state.client.token_for(session, scopes)
        return None if token is None else {"user": user, **token}

    def _sign_in_again(self, challenge: ClaimsChallenge, scopes: Iterable[str]) -> ResponseReturnValue:
        """A browser signs in again asking for the claims, and comes back here; an API caller gets the challenge."""
        if not wants_html():
            return challenge.get_response()
        here = current_path()
        if not session_data.note_claims_sign_in(session, here, challenge.claims, time.time()):
            # The same page asked for the same claims right after a sign-in that asked for
            # them: signing in again would only loop through the provider.
            logger.warning("A further API still asks for the same claims after a new sign-in")
            raise AccessDenied(
                "This page needs a sign-in that meets conditions your account did not meet. "
                "Please contact the site's administrator."
            )
        logger.info("A further API asked for more claims: the user signs in again")
        login = current_app_state().login_url(next_url=here, scopes=scopes, claims=challenge.encoded())
        return redirect(login)

    def unauthorized(self, *, reason: str = "signed_out", scopes: Iterable[str] = ()) -> ResponseReturnValue:
        """Answer a request a protected view refused.

        Sends :data:`~identity_flask.signals.unauthorized`, then calls the
        handler set with :meth:`unauthorized_handler` if any; otherwise
        redirects a browser to sign in and answers other callers 401.

        :param reason: ``"signed_out"`` or ``"consent_required"``.
        :param scopes: the scopes the view asked for.
        """
        scopes = list(scopes)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.unauthorized.send(app, reason=reason, scopes=scopes)
        if self._unauthorized_handler is not None:
            handled: ResponseReturnValue = current_app.ensure_sync(self._unauthorized_handler)(
                reason=reason, scopes=scopes
            )
            return handled
        if not wants_html():
            if reason == "consent_required":
                raise NotSignedIn("Consent to more scopes is needed: sign in again.", error="interaction_required")
            raise NotSignedIn("Sign in to use this resource.")
        return redirect(current_app_state().login_url(next_url=current_path(), scopes=scopes))

    def unauthorized_handler(self, handler: UnauthorizedHandler) -> UnauthorizedHandler:
        """Set the function that answers refused requests; usable as a decorator.

        It is called with keyword arguments ``reason`` and ``scopes`` and
        returns a response::

            @auth.unauthorized_handler
            def ask_to_sign_in(*, reason, scopes):
                return render_template("please_sign_in.html"), 401
        """
        self._unauthorized_handler = handler
        return handler

    def get_user(self) -> dict[str, Any] | None:
        """The signed-in user's id token claims, or ``None``."""
        return _current_user()

    def get_app_token(self, scopes: Sequence[str]) -> dict[str, Any]:
        """A token for the app itself to call an API (client credentials), cached process-wide.

        :param scopes: usually ``["<resource>/.default"]``.
        :return: ``access_token``, ``token_type``, ``expires_in`` and ``scopes``.
        :raises ProviderError: the provider refused (say, no permission to that API).
        """
        if isinstance(scopes, str) or not scopes or not all(isinstance(s, str) and s for s in scopes):
            raise ConfigurationError(f"get_app_token() takes a list of scopes, got {scopes!r}.")
        return current_app_state().downstream.app_token(list(scopes))

    def get_edit_profile_url(self) -> str | None:
        """A link that takes a B2C user through the edit-profile user flow and back.

        ``None`` when no edit-profile flow is configured.
        """
        return current_app_state().edit_profile_url()

    def get_reset_password_url(self) -> str | None:
        """A link that takes a B2C user through the reset-password user flow.

        ``None`` when no reset-password flow is configured.
        """
        return current_app_state().reset_password_url()


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1")
