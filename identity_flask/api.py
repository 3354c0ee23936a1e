"""Protect a Flask web API with bearer access tokens, and call further APIs from it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from flask import Flask, current_app, has_app_context, request

from . import config
from .bearer import BearerValidator, Refused
from .config import ApiSettings
from .downstream import Downstream
from .errors import BearerTokenError, ClaimsChallenge, ConfigurationError, IdentityError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Where an app keeps the state of each :class:`ApiAuth` set up on it.
EXTENSION_KEY = "identity_api"


class ApiState:
    """What one :class:`ApiAuth` keeps per app: settings, the validator, further-API tokens."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.validator = BearerValidator(settings)
        self.downstream = Downstream.for_settings(settings)


class ApiAuth:
    """Accepts bearer access tokens issued for this API by Microsoft Entra ID,
    External ID, Azure AD B2C or another OpenID provider.

    ``ApiAuth(client_id=..., authority=...)`` works without an app;
    ``ApiAuth(app, ...)`` or ``ApiAuth()`` then :meth:`init_app` read the same
    ``IDENTITY_*`` settings from ``app.config`` as :class:`~identity_flask.Auth`,
    so the two can protect one app (pages with a session, ``/api/...`` with tokens).

    :param client_id: the API's application (client) id: the ``aud`` of its v2 tokens.
    :param authority: ``https://login.microsoftonline.com/<tenant>`` (or
        ``/organizations`` with ``allowed_tenants``); or ``oidc_authority``, or
        the B2C pair ``b2c_tenant_name`` and ``b2c_signup_signin_user_flow``.
    :param client_credential: needed only to call further APIs: a client secret,
        a certificate dict as MSAL takes it, or a client assertion callable; or
        instead ``client_certificate_path`` (with ``client_certificate_passphrase``
        and ``client_certificate_send_x5c``), ``managed_identity`` or
        ``client_assertion_file``, as for
        :class:`~identity_flask.Auth` (one kind only).
    :param app_id_uri: the API's Application ID URI, the ``aud`` of v1 tokens;
        ``api://<client_id>`` by default.
    :param allowed_tenants: tenant ids whose tokens are accepted (multi-tenant APIs).
    :param allowed_client_apps: client ids allowed to call (``azp``/``appid``).
    :param clock_leeway: seconds of clock difference tolerated (60).
    """

    def __init__(self, app: Flask | None = None, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(config.API_DEFAULTS))
        if unknown:
            raise ConfigurationError(f"ApiAuth() got unknown settings: {', '.join(unknown)}.")
        self._given = settings
        #: The state of the app-less form, built from the arguments alone.
        self._own: ApiState | None = None
        if app is not None:
            self.init_app(app)
        elif settings.get("client_id") and any(
            settings.get(k) for k in ("authority", "oidc_authority", "b2c_tenant_name")
        ):
            self._own = _new_state(config.resolve_api({}, settings))

    def init_app(self, app: Flask) -> None:
        """Resolve the settings for ``app`` (arguments, then ``app.config``) and check them.

        :raises ConfigurationError: a setting is wrong, or this ApiAuth is already set up on ``app``.
        """
        states = app.extensions.setdefault(EXTENSION_KEY, {})
        if id(self) in states:
            raise ConfigurationError("This ApiAuth is already set up on this app; call init_app once per app.")
        states[id(self)] = _new_state(config.resolve_api(app.config, self._given))

    def _state(self) -> ApiState:
        if not has_app_context():
            if self._own is None:
                raise ConfigurationError("ApiAuth needs an app context, or client_id and authority given to it.")
            return self._own
        states = current_app.extensions.get(EXTENSION_KEY, {})
        state = states.get(id(self)) or self._own
        if state is None:
            self.init_app(current_app._get_current_object())  # type: ignore[attr-defined]
            state = current_app.extensions[EXTENSION_KEY][id(self)]
        return state

    @overload
    def authorization_required(self, function: F) -> F: ...

    @overload
    def authorization_required(
        self,
        function: None = None,
        *,
        expected_scopes: Mapping[str, str] | Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
    ) -> Callable[[F], F]: ...

    def authorization_required(
        self,
        function: F | None = None,
        *,
        expected_scopes: Mapping[str, str] | Iterable[str] | None = None,
        roles: Iterable[str] | None = None,
    ) -> F | Callable[[F], F]:
        """Call the view only with an acceptable bearer token, as ``view(..., context=...)``.

        :param expected_scopes: delegated scopes (``scp``) a user's token must all hold
            (as in Microsoft's preview); a dict maps each to the full scope clients
            request (for the ``WWW-Authenticate`` challenge), a list names them short
            (the full scope is ``<app_id_uri>/<name>``).
        :param roles: app roles (``roles``), any one of which lets a token in; with
            ``expected_scopes`` as well, they are what an app-only token needs.

        ``context`` holds ``claims`` (the token's), ``scopes`` and ``roles`` it carries,
        ``app_only`` (no user), and ``token_on_behalf_of(scopes)``, which gets a token
        for a further API for this caller. ``OPTIONS`` (a CORS preflight) gets Flask's
        default answer without calling the view.
        """
        scopes = _scopes(expected_scopes)
        wanted_roles = _roles(roles)
        if function is None:
            return functools.partial(self.authorization_required, expected_scopes=expected_scopes, roles=roles)
        view = function

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method == "OPTIONS":
                return current_app.make_default_options_response()
            try:
                context = self._context(scopes, wanted_roles)
                return current_app.ensure_sync(view)(*args, context=context, **kwargs)
            except ClaimsChallenge as challenge:
                # A further API wants more claims of the user: the caller must get a new
                # token for this API that satisfies them, so the challenge goes to it.
                raise BearerTokenError(
                    "A further API asks for a token that satisfies more conditions.",
                    error="insufficient_claims",
                    realm=self._state().settings.app_id_uri,
                    claims=challenge.encoded(),
                ) from None
            except IdentityError as error:
                error.json_only = True  # an API's callers read JSON, whatever they accept
                raise

        return wrapper

    def _context(self, scopes: dict[str, str | None], roles: frozenset[str]) -> dict[str, Any]:
        state = self._state()
        settings = state.settings
        realm = settings.app_id_uri
        full = tuple((value or f"{realm}/{name}") for name, value in scopes.items())
        token = _bearer_token(realm, full)
        try:
            claims = state.validator.claims(token)
        except Refused as exc:
            logger.info("Bearer token refused: %s", exc.reason)
            raise BearerTokenError(
                exc.reason, error=exc.error, status=exc.status, realm=realm, scopes=full if exc.status == 401 else ()
            ) from None
        scp = claims.get("scp")
        held_scopes = frozenset(scp.split()) if isinstance(scp, str) else frozenset()
        raw_roles = claims.get("roles")
        held_roles = (
            frozenset(r for r in raw_roles if isinstance(r, str)) if isinstance(raw_roles, list) else frozenset()
        )
        app_only = "scp" not in claims
        if not _allowed(app_only, held_scopes, held_roles, frozenset(scopes), roles):
            if app_only and not roles:
                reason = "This resource is for users: an app-only token holds no delegated scope."
            else:
                reason = (
                    f"The access token lacks the {'role' if (app_only or not scopes) else 'scope'} this resource needs."
                )
            logger.info("Bearer token refused: %s", reason)
            raise BearerTokenError(
                reason,
                error="insufficient_scope",
                status=403,
                realm=realm,
                scopes=full,
            )
        downstream = state.downstream

        def token_on_behalf_of(wanted: Sequence[str]) -> dict[str, Any]:
            return downstream.on_behalf_of(token, _scope_list(wanted), realm=realm)

        return {
            "claims": claims,
            "scopes": sorted(held_scopes),
            "roles": sorted(held_roles),
            "app_only": app_only,
            "token_on_behalf_of": token_on_behalf_of,
        }

    def get_app_token(self, scopes: Sequence[str]) -> dict[str, Any]:
        """A token for this API itself to call another (client credentials), cached process-wide.

        :param scopes: usually ``["<resource>/.default"]``.
        """
        return self._state().downstream.app_token(_scope_list(scopes))


def _new_state(settings: ApiSettings) -> ApiState:
    if settings.authority.multi_tenant and not settings.allowed_tenants:
        logger.warning(
            "ApiAuth accepts tokens of any organization's tenant (%s): set 'allowed_tenants' "
            "(IDENTITY_ALLOWED_TENANTS) to the tenants your API serves.",
            settings.authority.url,
        )
    return ApiState(settings)


def _bearer_token(realm: str, scopes: tuple[str, ...]) -> str:
    """The request's bearer token, or the 401 that says there is none usable."""
    header = request.headers.get("Authorization")
    if header is None:
        raise BearerTokenError("This resource needs a bearer access token.", error=None, realm=realm, scopes=scopes)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise BearerTokenError("This resource needs a bearer access token.", error=None, realm=realm, scopes=scopes)
    token = token.strip()
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise BearerTokenError("The bearer access token is malformed.", error="invalid_token", realm=realm)
    return token


def _allowed(
    app_only: bool, scopes: frozenset[str], roles: frozenset[str], wanted: frozenset[str], wanted_roles: frozenset[str]
) -> bool:
    if not wanted and not wanted_roles:
        return True
    if app_only:
        return bool(wanted_roles & roles)
    if wanted:
        return wanted <= scopes
    return bool(wanted_roles & roles)


def _scopes(expected: Mapping[str, str] | Iterable[str] | None) -> dict[str, str | None]:
    where = "authorization_required(expected_scopes=...)"
    if expected is None:
        return {}
    if isinstance(expected, str):
        raise ConfigurationError(f"{where} takes a list or a dict of scopes, got the string {expected!r}.")
    if isinstance(expected, Mapping):
        pairs = list(expected.items())
        if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in pairs):
            raise ConfigurationError(f"{where} as a dict maps scope names to full scopes, got {expected!r}.")
        return dict(pairs)
    names = list(expected)
    if not all(isinstance(n, str) and n.strip() and " " not in n for n in names):
        raise ConfigurationError(f"{where} takes scope names (strings without spaces), got {names!r}.")
    return dict.fromkeys(names)


def _roles(roles: Iterable[str] | None) -> frozenset[str]:
    if roles is None:
        return frozenset()
    if isinstance(roles, str):
        raise ConfigurationError(f"authorization_required(roles=...) takes a list, got the string {roles!r}.")
    wanted = frozenset(roles)
    if not all(isinstance(r, str) and r for r in wanted):
        raise ConfigurationError(f"authorization_required(roles=...) takes role names, got {sorted(wanted)!r}.")
    return wanted


def _scope_list(scopes: Sequence[str]) -> list[str]:
    if isinstance(scopes, str) or not all(isinstance(s, str) and s for s in scopes) or not scopes:
        raise ConfigurationError(f"Scopes are a list of strings, got {scopes!r}.")
    return list(scopes)
