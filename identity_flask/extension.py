"""The :class:`Auth` extension object."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, request, session
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import InternalServerError
from werkzeug.local import LocalProxy

from . import authorization, config, session_data, sign_in_options, signals
from . import groups as groups_module
from .app_state import VIEW_GROUPS_ATTR, VIEW_SCOPES_ATTR, AppState, current_app_state
from .cli import register as register_cli
from .errors import (
    AccessDenied,
    ClaimsChallenge,
    ConfigurationError,
    GroupRequired,
    GroupsUnreadable,
    NotSignedIn,
    RoleRequired,
    TenantNotAllowed,
    decode_claims,
)
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
    :param client_credential: how the app proves it is the app registration,
        when not by a certificate file or a managed identity (below): a client
        secret; a certificate dict as MSAL takes it
        (``{"private_key_pfx_path": ..., "passphrase": ...}``, ...); or a callable
        taking no arguments and returning a signed client assertion (a JWT)
        that a federated identity credential trusts, called whenever MSAL sends
        a token request, e.g. :func:`~identity_flask.credentials.assertion_from_file` for a
        Kubernetes workload identity token. Exactly one kind of credential may
        be set; see the docs page "Credentials".
    :param client_certificate_path: a certificate instead: a PEM file holding
        the private key and the certificate, or a PFX (``.pfx``/``.p12``) file.
        Read and checked at start-up (passphrase, key, expiry); its thumbprint
        is computed.
    :param client_certificate_passphrase: the passphrase of that file's key.
    :param client_certificate_send_x5c: send the certificate with each client
        assertion (``x5c``), for subject name and issuer authentication.
    :param managed_identity: an Azure managed identity instead: ``"system"`` or
        the client id of a user-assigned one. Its token for
        ``api://AzureADTokenExchange`` is the client assertion, which a
        federated identity credential of the app registration must trust.
    :param client_assertion_file: a file holding a client assertion instead,
        read again whenever it changes: Kubernetes workload identity's token
        file (the one ``AZURE_FEDERATED_TOKEN_FILE`` names), for a setting
        that can come from the environment.
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
        client_certificate_path: str | os.PathLike[str] | None = None,
        client_certificate_passphrase: str | bytes | None = None,
        client_certificate_send_x5c: bool | None = None,
        managed_identity: str | None = None,
        client_assertion_file: str | os.PathLike[str] | None = None,
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
            "client_certificate_path": client_certificate_path,
            "client_certificate_passphrase": client_certificate_passphrase,
            "client_certificate_send_x5c": client_certificate_send_x5c,
            "managed_identity": managed_identity,
            "client_assertion_file": client_assertion_file,
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
        register_cli(app, self._given)  # `flask identity doctor`
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
        self,
        function: None = None,
        /,
        *,
        scopes: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
        max_age: int | None = None,
        acrs: str | Iterable[str] | None = None,
        prompt: str | None = None,
        login_hint: str | None = None,
        domain_hint: str | None = None,
    ) -> Callable[[F], F]: ...

    def login_required(
        self,
        function: F | None = None,
        /,
        *,
        scopes: Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
        max_age: int | None = None,
        acrs: str | Iterable[str] | None = None,
        prompt: str | None = None,
        login_hint: str | None = None,
        domain_hint: str | None = None,
    ) -> F | Callable[[F], F]:
        """Let only signed-in users reach a view, which gets a ``context`` keyword.

        ``context["user"]`` holds the user's id token claims. On Microsoft
        Entra ID, ``oid`` together with ``tid`` names a user across tenants
        and apps (``sub`` differs from app to app; ``preferred_username`` and
        ``email`` may change and are not verified). With ``scopes``,
        ``context`` also holds ``access_token``, ``token_type``,
        ``expires_in`` and ``scopes``: a token from the user's cache, refreshed
        when it expired. When no token can be had silently, the user signs in
        again to consent to the scopes, and comes back.

        Authorization (each a 403 page when not met; ``allowed_tenants``
        applies to every protected view):

        - ``roles``: the user holds at least one of these app roles (the id
          token's ``roles`` claim) -- :class:`~identity_flask.errors.RoleRequired`;
        - ``groups``: the user is a member of at least one of these groups
          (object ids) -- :class:`~identity_flask.errors.GroupRequired`. When the
          id token carries Entra's overage marker instead of the list (more than
          200 groups), memberships are read from Microsoft Graph with the user's
          token (delegated ``User.Read``) and kept in the session for
          ``groups_cache_seconds``; if Graph refuses, the answer is 403, if it
          cannot be reached, 503. ``roles`` and ``groups`` together need both.

        Step-up: the user signs in again, and comes back to the same page and
        query string, when

        - ``max_age``: more than this many seconds (and a minute's leeway for
          clocks) passed since they last entered their credentials (the id
          token's ``auth_time``, which the provider must send: on Entra ID add
          the optional claim ``auth_time``);
        - ``acrs``: their sign-in did not meet these Entra authentication
          contexts (``"c1"`` ... ``"c99"``; the id token's ``acrs`` claim).

        A provider that answers the step-up without meeting it gets the user a
        403 page, not another round trip.

        ``prompt``, ``login_hint`` and ``domain_hint`` are sent when this view
        sends a user to sign in (see :mod:`identity_flask.sign_in_options`).

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

            @app.route("/payroll")
            @auth.login_required(groups=[PAYROLL_GROUP_ID], max_age=600)
            def payroll(*, context): ...
        """
        wanted = config.view_scopes(scopes)
        allowed = authorization.required_roles(roles)
        members = groups_module.required_groups(groups)
        step_up = _StepUp.of(max_age, acrs)
        options = _view_options(prompt=prompt, login_hint=login_hint, domain_hint=domain_hint)
        if function is None:
            return functools.partial(
                self.login_required,
                scopes=wanted,
                roles=allowed,
                groups=members,
                max_age=step_up.max_age,
                acrs=step_up.acrs,
                prompt=prompt,
                login_hint=login_hint,
                domain_hint=domain_hint,
            )
        view = function

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method == "OPTIONS":
                # A CORS preflight carries no credentials: answer it as Flask does by
                # default (the allowed methods, no body), never with the view's code.
                return current_app.make_default_options_response()
            run = current_app.ensure_sync(view)
            try:
                context = self._context(wanted, allowed, members, step_up)
            except _SignInNeeded as needed:
                if needed.step_up is not None:
                    return self._step_up(needed.step_up, wanted, options)
                reason = "signed_out" if session_data.get_user(session) is None else "consent_required"
                return self.unauthorized(reason=reason, scopes=needed.scopes, sign_in_options=options)
            try:
                return run(*args, context=context, **kwargs)
            except ClaimsChallenge as challenge:
                return self._sign_in_again(challenge, challenge.scopes or wanted)

        setattr(wrapper, VIEW_SCOPES_ATTR, wanted)  # the login view accepts these scopes
        setattr(wrapper, VIEW_GROUPS_ATTR, members)  # memberships of these are read and kept
        return wrapper

    def _context(
        self, scopes: tuple[str, ...], roles: frozenset[str], members: frozenset[str], step_up: _StepUp
    ) -> dict[str, Any]:
        """The ``context`` of a protected view, once the user passed its checks.

        :raises _SignInNeeded: the user must sign in (again).
        """
        user = session_data.get_user(session)
        if user is None:
            raise _SignInNeeded(scopes)
        state = current_app_state()
        try:
            authorization.check_tenant(user, state.settings.allowed_tenants)
        except TenantNotAllowed:
            session_data.sign_out(session)  # signed in before allowed_tenants changed
            raise
        if step_up:
            if not step_up.met_by(user, time.time()):
                raise _SignInNeeded(scopes, step_up=step_up)
            session_data.step_up_met(session)
        if roles and not roles.intersection(authorization.roles_of(user)):
            raise RoleRequired("Your account does not have a role this page needs.")
        if members and not members.intersection(self._memberships(state, user, members)):
            raise GroupRequired("Your account is not a member of a group this page needs.")
        if not scopes:
            return {"user": user}
        token = state.client.token_for(session, scopes)
        if token is None:
            raise _SignInNeeded(scopes)
        return {"user": user, **token}

    def _memberships(self, state: AppState, user: dict[str, Any], members: frozenset[str]) -> frozenset[str]:
        """The user's groups: the id token's list, or, past its overage, Microsoft Graph's answer.

        :raises _SignInNeeded: no token for Graph can be had without signing in.
        """
        listed = groups_module.in_token(user)
        if listed is not None:
            return listed
        settings = state.settings
        if settings.authority.kind != "entra":
            # Only Microsoft Entra's overage is answered by Microsoft Graph; elsewhere the
            # groups are unknown, and unknown is a refusal.
            logger.warning("An id token from a %s authority left its groups out; refused", settings.authority.kind)
            raise GroupsUnreadable("Your group memberships could not be read, so this page cannot let you in.")
        # The groups of every view found, and this view's (one decorated out of sight of the app's views).
        among = state.known_groups | members
        who = str(user.get("oid") or user.get("sub"))
        asked, now = groups_module.digest(among), time.time()
        held = session_data.cached_groups(session, who, asked, now, settings.groups_cache_seconds)
        if held is not None:
            return held
        scopes = groups_module.graph_scopes(settings.graph_endpoint)
        token = state.client.token_for(session, scopes)
        if token is None:
            raise _SignInNeeded(scopes)
        held = groups_module.read_memberships(
            state.client.http, settings.graph_endpoint, token["access_token"], among, settings.timeout
        )
        session_data.store_groups(session, who, asked, held, now)
        logger.info("Read group memberships from Microsoft Graph (the id token carried the overage marker)")
        return held

    def _step_up(self, step_up: _StepUp, scopes: tuple[str, ...], options: dict[str, str]) -> ResponseReturnValue:
        """Send the user to sign in again as ``step_up`` asks, unless they just did and it did not help."""
        if not wants_html():
            raise NotSignedIn("This resource needs a recent or stronger sign-in.", error="interaction_required")
        user = session_data.get_user(session) or {}
        claims = step_up.claims(user)
        name = session_data.step_up_name(step_up.max_age, decode_claims(claims) if claims else None)
        if session_data.step_up_answered(session, name, user):
            logger.warning(
                "The provider answered a step-up sign-in (%s) without meeting it; for max_age, the id token "
                "needs auth_time (on Entra ID: the optional claim auth_time)",
                step_up.what,
            )
            raise AccessDenied(
                "This page needs a recent or stronger sign-in, and the sign-in service did not confirm one. "
                "Please contact the site's administrator."
            )
        logger.info("A view asked for a step-up sign-in (%s)", step_up.what)
        login = current_app_state().login_url(
            next_url=current_path(),
            scopes=scopes,
            claims=claims,
            options={**options, "max_age": step_up.max_age},
        )
        return redirect(login)

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

    def unauthorized(
        self,
        *,
        reason: str = "signed_out",
        scopes: Iterable[str] = (),
        sign_in_options: Mapping[str, str] | None = None,
    ) -> ResponseReturnValue:
        """Answer a request a protected view refused.

        Sends :data:`~identity_flask.signals.unauthorized`, then calls the
        handler set with :meth:`unauthorized_handler` if any; otherwise
        redirects a browser to sign in and answers other callers 401.

        :param reason: ``"signed_out"`` or ``"consent_required"``.
        :param scopes: the scopes the view asked for.
        :param sign_in_options: ``prompt``, ``login_hint`` or ``domain_hint``
            the view asks sign-ins to be started with.
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
        login = current_app_state().login_url(next_url=current_path(), scopes=scopes, options=sign_in_options)
        return redirect(login)

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


#: Seconds of clock difference allowed between the provider and this app in step-up checks.
STEP_UP_LEEWAY = 60


class _SignInNeeded(Exception):
    """Raised inside a protected view's checks: the user must sign in (again) first."""

    def __init__(self, scopes: tuple[str, ...], *, step_up: _StepUp | None = None) -> None:
        super().__init__()
        self.scopes = scopes
        self.step_up = step_up


@dataclasses.dataclass(frozen=True)
class _StepUp:
    """What a view asks of the user's sign-in: its age (``max_age``), its authentication contexts (``acrs``)."""

    max_age: int | None = None
    acrs: tuple[str, ...] = ()

    @classmethod
    def of(cls, max_age: Any, acrs: Any) -> _StepUp:
        """Checked when the view is decorated.

        :raises ConfigurationError: a value the provider may not be sent.
        """
        try:
            return cls(sign_in_options.max_age(max_age), sign_in_options.auth_contexts(acrs))
        except sign_in_options.BadOption as exc:
            raise ConfigurationError(f"login_required(): {exc}.") from None

    def __bool__(self) -> bool:
        return self.max_age is not None or bool(self.acrs)

    @property
    def what(self) -> str:
        """A short text naming what is asked, for the loop check and the log."""
        parts = [f"max_age={self.max_age}"] if self.max_age is not None else []
        if self.acrs:
            parts.append("acrs=" + ",".join(self.acrs))
        return ";".join(parts)

    def met_by(self, user: Mapping[str, Any], now: float) -> bool:
        """Whether the sign-in behind ``user`` (its id token claims) meets what is asked."""
        if self.max_age is not None:
            auth_time = user.get("auth_time")
            if not isinstance(auth_time, (int, float)) or isinstance(auth_time, bool) or not math.isfinite(auth_time):
                return False
            if not -STEP_UP_LEEWAY <= now - auth_time <= self.max_age + STEP_UP_LEEWAY:
                return False
        return set(self.acrs) <= sign_in_options.acrs_of(user)

    def claims(self, user: Mapping[str, Any]) -> str | None:
        """The claims request for the first authentication context ``user``'s sign-in does not
        meet (one at a time: a request naming several asks for any one of them), base64 of its
        JSON; ``None`` when none is missing."""
        missing = sorted(set(self.acrs) - sign_in_options.acrs_of(user))
        if not missing:
            return None
        text = json.dumps(sign_in_options.acrs_request(missing[:1]), separators=(",", ":"))
        return base64.b64encode(text.encode()).decode()


def _view_options(**given: str | None) -> dict[str, str]:
    """The sign-in options a view sends users to sign in with, checked when it is decorated.

    :raises ConfigurationError: a value the provider may not be sent.
    """
    options: dict[str, str] = {}
    for name, value in given.items():
        try:
            checked = getattr(sign_in_options, name)(value)
        except sign_in_options.BadOption as exc:
            raise ConfigurationError(f"login_required(): {exc}.") from None
        if checked is not None:
            options[name] = checked
    return options
