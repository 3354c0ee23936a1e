"""The ``identity`` blueprint: login, the redirect URI (callback) and logout.

Login and logout are served beside the callback's path, as ``identity.flask``
does: with ``redirect_uri=http://host/auth/getAToken`` they are ``/auth/login``
and ``/auth/logout``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session
from werkzeug.wrappers import Response

from . import authorization, diagnosis, frontchannel, groups, session_data, sign_in_options, signals, tokens
from .app_state import FLOW_KINDS, AppState, current_app_state
from .client import TokenCache
from .config import Settings
from .errors import (
    AccessDenied,
    IdentityError,
    ProviderError,
    ProviderUnavailable,
    SignInError,
    SignInLoop,
    decode_claims,
)
from .redaction import one_line
from .redirects import safe_next
from .session_store import regenerate

logger = logging.getLogger(__name__)

#: B2C's answer when the user chose "Forgot your password?".
B2C_FORGOT_PASSWORD = "AADB2C90118"

_EXPIRED = "The sign-in took too long and has expired. Please sign in again."


def make_blueprint(settings: Settings) -> Blueprint:
    """Build the blueprint for one app; its paths follow that app's redirect URI."""
    bp = Blueprint("identity", __name__, template_folder="templates")
    prefix = settings.routes_prefix
    bp.add_url_rule(f"{prefix}/login", "login", login, methods=["GET"])
    # The provider answers by the method the response mode names; the other one is refused
    # before the session is touched.
    callback_method = "POST" if settings.response_mode == "form_post" else "GET"
    bp.add_url_rule(settings.redirect_path, "auth_response", auth_response, methods=[callback_method])
    bp.add_url_rule(f"{prefix}/logout", "logout", logout, methods=["GET", "POST"])
    bp.add_url_rule(f"{prefix}/frontchannel-logout", "frontchannel_logout", frontchannel_logout, methods=["GET"])
    bp.record_once(lambda setup: frontchannel.check_store(setup.app))  # says so if it cannot work
    return bp


def _start(
    state: AppState,
    kind: str,
    next_url: str,
    scopes: list[str],
    prompt: str | None,
    claims: str | None = None,
    *,
    login_hint: str | None = None,
    domain_hint: str | None = None,
    max_age: int | None = None,
) -> Response:
    authority = state.authority(kind)
    settings = state.settings
    sign_in = kind == "sign_in"
    flow = state.client.start(
        [*settings.scopes, *scopes] if sign_in else [],
        state.redirect_uri(),
        authority=authority,
        prompt=prompt if sign_in else None,
        response_mode=settings.response_mode,
        claims=claims if sign_in else None,
        login_hint=login_hint,
        domain_hint=(domain_hint or settings.domain_hint) if sign_in else None,
        max_age=max_age if sign_in else None,
    )
    if sign_in and (max_age is not None or claims) and session_data.get_user(session) is not None:
        # A step-up: the view that asked checks whether this very sign-in came back unmet. Only a
        # signed-in user steps up; anyone may send these arguments, and nobody's start is stored.
        sent = parse_qs(urlsplit(flow["auth_uri"]).query).get("nonce", [""])[0]
        session_data.note_step_up(session, session_data.step_up_name(max_age, claims), sent)
    entry = {
        "flow": {k: v for k, v in flow.items() if k != "auth_uri"},
        "next": next_url,
        "kind": kind,
    }
    state.pending.add(flow["state"], entry)
    return redirect(flow["auth_uri"])


def login() -> Response:
    """Start a sign-in and send the browser to the provider.

    Query arguments: ``next`` (a path on this site to return to), ``scopes``
    (space-separated, each one a protected view asks for), ``flow``
    (``edit_profile`` or ``reset_password`` for B2C), ``claims`` (a claims
    request, base64 JSON, from a :class:`~identity_flask.ClaimsChallenge` or a
    view's ``acrs``), and the sign-in options ``prompt``, ``login_hint``,
    ``domain_hint`` and ``max_age`` (see :mod:`identity_flask.sign_in_options`);
    a value the provider may not be sent is a 400.
    """
    state = current_app_state()
    kind = request.args.get("flow", "sign_in")
    if kind not in FLOW_KINDS or state.authority(kind) is None:
        raise SignInError(f"This app has no {kind.replace('_', ' ')} flow configured.")
    scopes = request.args.get("scopes", "").split()
    # Graph's scope for group memberships is asked by the extension itself, whichever views it found.
    graph = groups.graph_scopes(state.settings.graph_endpoint)
    unknown = [s for s in scopes if s not in state.known_scopes and s not in graph]
    if unknown:
        raise SignInError("The sign-in asked for scopes this app does not use.", error="invalid_scope")
    try:
        prompt = sign_in_options.prompt(request.args.get("prompt")) or state.settings.prompt
        login_hint = sign_in_options.login_hint(request.args.get("login_hint"))
        domain_hint = sign_in_options.domain_hint(request.args.get("domain_hint"))
        max_age = sign_in_options.max_age(request.args.get("max_age"))
    except sign_in_options.BadOption as exc:
        # The message names the option, not the value: a link's text is not echoed on this site.
        message = f"The sign-in link is not valid: its {exc.option} cannot be sent."
        raise SignInError(message, error="invalid_request") from None
    claims = None
    if "claims" in request.args:
        claims = decode_claims(request.args["claims"])
        if claims is None:
            raise SignInError("The sign-in asked for claims that are not a JSON object.", error="invalid_request")
    return _start(
        state,
        kind,
        safe_next(request.args.get("next")),
        scopes,
        prompt,
        claims,
        login_hint=login_hint,
        domain_hint=domain_hint,
        max_age=max_age,
    )


def _provider_error(state: AppState, params: Any, entry: dict[str, Any]) -> Response:
    error = str(params.get("error"))
    description = str(params.get("error_description") or "")
    if B2C_FORGOT_PASSWORD in description and state.settings.reset_password_authority is not None:
        logger.info("B2C user asked to reset their password")
        return _start(state, "reset_password", entry.get("next", "/"), [], None)
    redirect_uri = entry.get("flow", {}).get("redirect_uri")
    found = diagnosis.provider_failure(error, description, redirect_uri=redirect_uri)
    logger.warning(
        "Provider answered the sign-in with %s: %s%s",
        one_line(error),
        one_line(description),
        f" {found.log_line()}" if found is not None else "",
    )
    shown = description[:1000] or None
    if error == "access_denied":
        raise AccessDenied(shown or "The sign-in was cancelled.", diagnosis=found)
    if error == "temporarily_unavailable":
        raise ProviderUnavailable(shown, error=error, diagnosis=found)
    if error == "server_error":
        raise ProviderError(shown, error=error, diagnosis=found)
    raise SignInError(shown or "The sign-in service refused the sign-in.", error=error, diagnosis=found)


def auth_response() -> Response:
    """The redirect URI: finish the sign-in the provider sent the browser back from."""
    state = current_app_state()
    settings = state.settings
    params = request.form if request.method == "POST" else request.args
    try:
        return _finish(state, settings, params)
    except IdentityError as exc:
        signals.sign_in_failed.send(current_app._get_current_object(), error=exc)  # type: ignore[attr-defined]
        raise


def no_store_after_callback(redirect_path: str) -> Callable[[Response], Response]:
    """An ``after_request`` function for an app whose callback is at ``redirect_path``.

    Whatever the callback answers (a redirect, an error page of the extension's
    or the app's), its URL held an authorization code: the answer keeps it out
    of ``Referer`` headers and caches.
    """

    def protect(response: Response) -> Response:
        if request.path == redirect_path:
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
        return response

    return protect


def _finish(state: AppState, settings: Settings, params: Any) -> Response:
    state_value = params.get("state")
    if not state_value:
        found = diagnosis.diagnose("no_state")
        diagnosis.report(found)
        raise SignInError("The sign-in response is missing its state. Please sign in again.", diagnosis=found)
    entry, expired = state.pending.take(state_value)
    if entry is None:
        found = diagnosis.unmatched_callback(
            state.pending.trace(state_value),
            redirect_uri=state.redirect_uri(),
            ttl=settings.sign_in_timeout,
            keep=settings.max_pending_sign_ins,
        )
        diagnosis.report(found)
        if found.code == "expired":
            raise SignInError(_EXPIRED, error="expired", diagnosis=found)
        raise SignInError(
            "This sign-in response does not match a sign-in started in this browser, "
            "or it was already used. Please sign in again.",
            error="invalid_state",
            diagnosis=found,
        )
    if expired:
        found = diagnosis.diagnose("expired", f"IDENTITY_SIGN_IN_TIMEOUT is {settings.sign_in_timeout} s.")
        diagnosis.report(found)
        raise SignInError(_EXPIRED, error="expired", diagnosis=found)
    if params.get("error"):
        return _provider_error(state, params, entry)
    if not params.get("code"):
        raise SignInError("The sign-in response carries no authorization code.")
    # The pending cookies outlive a store that loses sessions: they count the round trips.
    lost = diagnosis.session_kept() is False
    repeated = diagnosis.repeated_sign_in(state.pending.finished(), lost=lost)
    if repeated is not None:
        diagnosis.report(repeated, "Sign-in repeated")
        if repeated.code == "login_loop":
            raise SignInLoop(
                "Signing in did not last and kept starting over, so it was stopped. Please try again later.",
                diagnosis=repeated,
            )

    kind = entry.get("kind", "sign_in")
    cache = TokenCache()
    result, account_id = state.client.finish(entry["flow"], params.to_dict(), cache, authority=state.authority(kind))
    claims = result.get("id_token_claims")
    if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str) or not claims["sub"]:
        # Without an id token naming a subject there is nobody to sign in.
        logger.warning("Token endpoint answered the code without a usable id token")
        raise ProviderError("The sign-in service answered without identifying the user.")
    authorization.check_tenant(claims, settings.allowed_tenants)

    previous = session_data.get_user(session)
    same_user = previous is not None and _same_user(previous, claims)
    now = time.time()
    scope_free = state.client.scope_free_refresh
    new_cache = tokens.trimmed(json.loads(cache.serialize()), now, scope_free_refresh=scope_free)
    if same_user:
        # A consent sign-in: the tokens for the new scopes join the ones already held.
        new_cache = tokens.merged(session_data.token_cache(session), new_cache, now, scope_free_refresh=scope_free)
        if kind != "sign_in":  # B2C's other user flows have accounts of their own
            account_id = session_data.account_id(session) or account_id
            claims = {**(previous or {}), **claims}

    session_data.sign_in(session, claims, account_id, new_cache)
    regenerate(current_app, session)
    frontchannel.remember(current_app, session, settings.authority.kind)  # for front-channel logout
    state.pending.finish(lost=lost)
    logger.info("Signed in %s", claims.get("oid") or claims.get("sub"))
    signals.signed_in.send(current_app._get_current_object(), user=claims)  # type: ignore[attr-defined]
    return redirect(safe_next(entry.get("next")))


def _same_user(previous: dict[str, Any], claims: dict[str, Any]) -> bool:
    keys = ("oid", "sub") if previous.get("oid") else ("sub",)
    return all(previous.get(k) == claims.get(k) for k in keys) and previous.get("tid") == claims.get("tid")


def _same_origin(origin: str) -> bool:
    """Whether the request proves it came from a page of ``origin``: by
    ``Sec-Fetch-Site``, else ``Origin``, else ``Referer``. No proof is a no."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    sender = request.headers.get("Origin") or request.headers.get("Referer")
    if not sender or sender == "null":
        return False
    try:
        parts = urlsplit(sender)
    except ValueError:  # e.g. "http://[" : not a URL, so not this site
        return False
    return f"{parts.scheme}://{parts.netloc}".lower() == origin.lower()


def logout() -> Response | str:
    """Forget the user here, then sign them out at the provider and come back.

    A GET from another site only shows a confirmation button, so no page
    elsewhere can sign the user out behind their back. The provider is sent the
    user's ``login_hint`` claim as ``logout_hint`` when the id token had one (on
    Entra ID, the optional claim ``login_hint``), so it signs that account out
    without showing its account picker.
    """
    state = current_app_state()
    if not _same_origin(state.origin()):
        # Cross-site, or no evidence either way (every current browser sends one of the
        # headers): a GET only shows a button that posts back; a POST must prove its origin.
        if request.method == "POST":
            raise SignInError("Sign-out requests must come from this site.", error="invalid_request")
        return render_template("identity/logout.html")
    user = session_data.get_user(session)
    # Read before the session is cleared: the provider signs this account out without
    # showing its account picker.
    hint = session_data.logout_hint(session)
    frontchannel.forget(current_app, session, state.settings.authority.kind)
    session_data.sign_out(session)
    signals.signed_out.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]
    return_to = state.post_logout_url()
    try:
        target = state.client.logout_url(return_to, logout_hint=hint)
    except (ProviderUnavailable, ProviderError) as exc:
        logger.warning("Signed out here only; the provider's sign-out address is unknown: %s", exc.error)
        target = None  # signed out here; the provider's session is left to expire
    return redirect(target or return_to)


def frontchannel_logout() -> Response:
    """The front-channel logout URL: the provider loads it in a hidden frame when the
    user signs out there, with ``iss`` and ``sid`` (see :mod:`identity_flask.frontchannel`).

    Ends the sessions signed in from that provider session, found without the
    browser's cookie, and no other. Not a sign-out the user asks for, so neither
    the same-site check of :func:`logout` nor CSRF applies: the ``sid``, held by
    the provider and the user's id token, is what protects it. The answer says
    nothing of what was found: 200 with an empty body whether a session ended
    or not; 400 only for a request of the wrong shape. It is never cached, and
    the extension does not forbid framing it (an app that sends
    ``X-Frame-Options`` must leave this path out).
    """
    kind = current_app_state().settings.authority.kind
    answer: Response
    try:
        issuer, sid = frontchannel.parse(request.args, kind)
    except frontchannel.BadRequest as exc:
        logger.info("Refused a front-channel sign-out request: %s", exc)
        error = SignInError(str(exc), error="invalid_request")
        error.title = "Sign-out failed"
        answer = error.get_response()  # type: ignore[assignment]
    else:
        ended = frontchannel.end(current_app, issuer, sid, kind)
        logger.info("Front-channel sign-out from the provider ended %d session(s)", ended)
        answer = Response(b"", 200, content_type="text/plain; charset=utf-8")
    answer.headers["Cache-Control"] = "no-cache, no-store"  # as Front-Channel Logout 1.0 asks
    answer.headers["Pragma"] = "no-cache"
    return answer
