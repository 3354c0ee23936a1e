"""Why a sign-in failed and what fixes it: one table for the code, the log and the docs.

Every failure the extension can explain is a :class:`Cause` in :data:`CAUSES`:
a short code, who can fix it, one sentence saying what went wrong, and the fix.
The code is in the WARNING log line and in the JSON body's ``cause``; in debug
mode (``app.debug``) the error page shows the cause and the fix too, while in
production the page stays generic and the log line carries the diagnosis. The
docs' troubleshooting page is rendered from the same table
(:func:`troubleshooting_page`); the docs build and a test refuse a page that
drifted from it.

The evidence is what the request really shows: which of the app's cookies came
back, what the browser's sign-in cookies say (:mod:`identity_flask.pending`),
whether the session cookie named a session the store has, and the callback's
origin against the redirect URI's. It never holds a session id, a state, a code
or a token.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import current_app, request, session

from .redaction import one_line

if TYPE_CHECKING:
    from .pending import Trace

logger = logging.getLogger(__name__)

#: Who can fix a cause, as the docs and the log name them.
AUDIENCES = {
    "developer": "the app's developer",
    "operator": "whoever deploys and runs the app",
    "administrator": "the tenant's administrator",
    "user": "the user (nothing is wrong with the app)",
}

#: The sections of the table, in the order the docs show them.
SECTIONS = {
    "callback": "The callback found no sign-in to finish",
    "loop": "Sign-in starts over and over",
    "provider": "The provider refused",
}

#: A sign-in completed within this many seconds of others counts towards a loop.
LOOP_WINDOW = 60
#: The sign-in that would be the this-many-th completed within :data:`LOOP_WINDOW`
#: seconds, each after the session of the one before was lost, is stopped.
LOOP_SIGN_INS = 3
#: Longest piece of request-supplied evidence (a host name, say) a log line carries.
MAX_EVIDENCE = 160
#: Longest diagnosis log line.
MAX_LINE = 590


@dataclass(frozen=True)
class Cause:
    """One row of the table: a failure the extension can explain.

    :param code: short and stable, e.g. ``no_cookie``; in the log line and the JSON body.
    :param audience: who can fix it, a key of :data:`AUDIENCES`.
    :param section: where it is met, a key of :data:`SECTIONS`.
    :param title: a heading for the docs.
    :param summary: one sentence: what went wrong.
    :param fix: what to do about it.
    :param provider_codes: the provider's error codes this row explains (``AADSTS50011``...).
    :param answer: the status and ``error`` the extension answers with, for the docs.
    """

    code: str
    audience: str
    section: str
    title: str
    summary: str
    fix: str
    provider_codes: tuple[str, ...] = ()
    answer: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """A :class:`Cause` met by one request, with what this request showed of it.

    :param cause: the row of :data:`CAUSES`.
    :param evidence: the facts seen (hosts, ages, the redirect URI sent); never a secret.
    """

    cause: Cause
    evidence: str = ""

    @property
    def code(self) -> str:
        """The cause's short code."""
        return self.cause.code

    @property
    def summary(self) -> str:
        """What went wrong, as plain text."""
        return _plain(self.cause.summary)

    @property
    def fix(self) -> str:
        """What fixes it, as plain text."""
        return _plain(self.cause.fix)

    def log_line(self) -> str:
        """The diagnosis on one capped line: code, who can fix it, cause, evidence, fix."""
        text = f"[cause={self.code}, for the {self.cause.audience}] {self.summary}"
        if self.evidence:
            text += f" {self.evidence}"
        return one_line(f"{text} Fix: {self.fix}", MAX_LINE)


def _plain(text: str) -> str:
    """Table text without its Markdown code marks, for log lines and pages."""
    return text.replace("`", "")


CAUSES: tuple[Cause, ...] = (
    # --- the callback found no sign-in ------------------------------------------------------
    Cause(
        "no_state",
        "developer",
        "callback",
        "The answer came back without its state",
        "The redirect URI was called without a `state`: it was opened directly (a bookmark, "
        "a link, a reload), or something between the provider and the app dropped its query.",
        "Start every sign-in at the login view, never at the redirect URI, and make sure "
        "proxies pass the callback's query (or its form body for `form_post`) on unchanged.",
        answer="400, `invalid_request`",
    ),
    Cause(
        "no_cookie",
        "developer",
        "callback",
        "No cookie came back",
        "The callback carried none of the app's cookies, so nothing ties it to a sign-in this browser started.",
        "Open the app at the redirect URI's host (`localhost` and `127.0.0.1` are two hosts to a "
        "browser); do not use `SESSION_COOKIE_SAMESITE = 'Strict'`; let `SESSION_COOKIE_DOMAIN` and "
        "`SESSION_COOKIE_PATH` cover the redirect URI; a browser that blocks the site's cookies cannot sign in.",
        answer="400, `invalid_state`",
    ),
    Cause(
        "secure_cookie_http",
        "developer",
        "callback",
        "A Secure cookie over http",
        "The callback came over plain http, and the app marks its cookies `Secure`, which browsers "
        "send over https only.",
        "Serve the app and its redirect URI over https; for local development over http only, set "
        "`SESSION_COOKIE_SECURE = False` (it is turned on for an https redirect URI).",
        answer="400, `invalid_state`",
    ),
    Cause(
        "host_mismatch",
        "developer",
        "callback",
        "The callback reached another host",
        "The sign-in started, or its callback arrived, on another host or scheme than the "
        "redirect URI's, and browsers keep cookies per host name.",
        "Open the app at the redirect URI's exact host; behind a proxy, have the app see the "
        "browser's host and scheme (werkzeug's `ProxyFix(x_proto=1, x_host=1)`, the proxy passing "
        "`Host` and `X-Forwarded-*` on).",
        answer="400, `invalid_state`",
    ),
    Cause(
        "key_mismatch",
        "operator",
        "callback",
        "The sign-in's cookie does not decrypt",
        "This sign-in's cookie came back but does not decrypt with `SECRET_KEY` or `SECRET_KEY_FALLBACKS`: "
        "it was started by a worker or instance with another key, the key changed since, or it was altered.",
        "Give every worker and instance the same `SECRET_KEY` from configuration, never one generated "
        "at start-up; when rotating it, keep the old key in `SECRET_KEY_FALLBACKS` for a while.",
        answer="400, `invalid_state`",
    ),
    Cause(
        "already_used",
        "user",
        "callback",
        "The sign-in was already finished",
        "This browser already finished the sign-in this answer belongs to: the callback was "
        "replayed (the back button, a reload, a second tab on the same link).",
        "Nothing to fix if it is rare: the user is signed in, or signs in again. If it happens at every "
        "sign-in, something requests the callback twice (a link prefetcher, an extension, a retrying proxy).",
        answer="400, `invalid_state`",
    ),
    Cause(
        "expired",
        "user",
        "callback",
        "The sign-in took too long",
        "The sign-in started longer ago than the sign-in timeout allows, so it expired.",
        "The user signs in again. If users often need longer (enrolling for MFA, say), raise "
        "`IDENTITY_SIGN_IN_TIMEOUT` (seconds, 600 by default).",
        answer="400, `expired`",
    ),
    Cause(
        "superseded",
        "user",
        "callback",
        "Too many sign-ins started at once",
        "More sign-ins were started in this browser after this one than the app keeps pending "
        "(fewer when their return addresses are very long), so this one was dropped.",
        "The user signs in again. If pages start many sign-ins at once (many tabs, or images and "
        "scripts sent to sign in), raise `IDENTITY_MAX_PENDING_SIGN_INS` (8 by default).",
        answer="400, `invalid_state`",
    ),
    Cause(
        "unknown_state",
        "developer",
        "callback",
        "No sign-in with this state",
        "The browser's cookies came back but hold no sign-in with this state: it was started in "
        "another browser or profile, or the answer was forged (a login CSRF attempt).",
        "Nothing to fix if it is rare: the answer was rightly refused. If every user meets it, check "
        "that sign-in starts at the login view and that nothing rewrites the callback's query.",
        answer="400, `invalid_state`",
    ),
    # --- login loops ---------------------------------------------------------------------------
    Cause(
        "session_lost",
        "operator",
        "loop",
        "The session is gone from the store",
        "The browser sent the session cookie of a sign-in it finished a short time ago, but the "
        "session store has no such session, so the user is sent to sign in again.",
        "Use one session store every worker and instance shares (`SESSION_TYPE = 'redis'`); the default "
        "file store is per machine, and per instance on App Service. Keep the store from evicting sessions.",
        answer="logged; the sign-in goes on",
    ),
    Cause(
        "login_loop",
        "operator",
        "loop",
        "Sign-in keeps starting over",
        "This browser finished several sign-ins within a minute and lost its session each time "
        "before the next page, so the sign-in was stopped rather than started over again.",
        "Share the session store between all workers and instances (`SESSION_TYPE = 'redis'`), keep it "
        "from evicting sessions, and give the app its own `SESSION_COOKIE_NAME` if another app on the host uses it.",
        answer="400, `login_loop`",
    ),
    # --- the provider's errors -------------------------------------------------------------------
    Cause(
        "redirect_uri_mismatch",
        "developer",
        "provider",
        "The redirect URI is not registered",
        "The redirect URI the app sent is not one registered for the app (Entra usually shows this "
        "on its own page, and the browser never comes back).",
        "Register the exact redirect URI sent (in the log) in the Azure portal: App registrations > "
        "your app > Authentication > Web > Redirect URIs; http is accepted for localhost only.",
        provider_codes=("AADSTS50011",),
    ),
    Cause(
        "app_not_found",
        "developer",
        "provider",
        "The application is not in that tenant",
        "The tenant the app signs in to has no application with the client id the app sent.",
        "Check `IDENTITY_CLIENT_ID` (the app registration's Application (client) ID) and "
        "`IDENTITY_AUTHORITY` (the tenant it is registered in, not `common` for a single-tenant app).",
        provider_codes=("AADSTS700016",),
    ),
    Cause(
        "client_secret_invalid",
        "operator",
        "provider",
        "The client secret is wrong",
        "The client secret the app sent is not one of the app registration's secrets.",
        "Set `IDENTITY_CLIENT_CREDENTIAL` to the secret's Value (not its Secret ID), from the app "
        "registration's Certificates & secrets page.",
        provider_codes=("AADSTS7000215",),
    ),
    Cause(
        "client_secret_expired",
        "operator",
        "provider",
        "The client secret has expired",
        "The client secret the app sent has expired.",
        "Add a new secret under the app registration's Certificates & secrets, set it as "
        "`IDENTITY_CLIENT_CREDENTIAL`, and plan the next rotation (a certificate or a managed "
        "identity avoids secrets).",
        provider_codes=("AADSTS7000222",),
    ),
    Cause(
        "client_rejected",
        "operator",
        "provider",
        "The provider refused the app's credential",
        "The token endpoint answered `invalid_client` with no code of its own: the client id, or the "
        "credential sent with it, is not one the provider accepts (an OpenID Connect provider other "
        "than Entra ID answers a wrong client secret so).",
        "Check `IDENTITY_CLIENT_ID` and the credential (the client secret's value, the certificate or "
        "the federated credential) against the app's registration at the provider.",
        answer="502, `invalid_client`",
    ),
    Cause(
        "consent_required",
        "administrator",
        "provider",
        "Consent is needed",
        "Neither the user nor an administrator has consented to the permissions the app asks for.",
        "Grant admin consent (App registrations > your app > API permissions > Grant admin consent), "
        "or let users consent; ask only for scopes listed there.",
        provider_codes=("AADSTS65001",),
    ),
    Cause(
        "user_not_in_tenant",
        "administrator",
        "provider",
        "The user's account is from another tenant",
        "The account is from a tenant the app does not accept (or is a personal Microsoft account) "
        "and is not a guest in the app's tenant.",
        "Invite the user as a guest of the app's tenant, or make the app multi-tenant and sign in "
        "through `organizations` with `IDENTITY_ALLOWED_TENANTS`.",
        provider_codes=("AADSTS50020",),
    ),
    Cause(
        "interaction_required",
        "user",
        "provider",
        "Multi-factor authentication is required",
        "A policy (Conditional Access, per-user MFA) requires the user to use or register "
        "multi-factor authentication before signing in.",
        "The user signs in again and completes or registers MFA; if it recurs, check that the "
        "policy lets the app's users register.",
        provider_codes=("AADSTS50076", "AADSTS50079"),
    ),
    Cause(
        "external_account_missing",
        "administrator",
        "provider",
        "The external account is not in the tenant",
        "The external account the user signed in with does not exist in the tenant, so it cannot "
        "meet the tenant's MFA requirements.",
        "Add the account to the tenant as an external (guest) user first, or sign in with an account "
        "of the tenant; for synced users, check that the source anchor (ImmutableID) matches.",
        provider_codes=("AADSTS90072",),
    ),
    Cause(
        "user_cancelled",
        "user",
        "provider",
        "The user cancelled",
        "The user cancelled the B2C user flow.",
        "Nothing to fix: the user can sign in again.",
        provider_codes=("AADB2C90091",),
        answer="403, `access_denied`",
    ),
    Cause(
        "forgot_password",
        "developer",
        "provider",
        "The user forgot their password",
        'The user chose "Forgot your password?" on a B2C sign-in page.',
        "Set `IDENTITY_B2C_RESET_PASSWORD_USER_FLOW`: the extension then starts that flow itself. "
        "Without it the user gets a 403.",
        provider_codes=("AADB2C90118",),
        answer="a redirect to the reset-password flow; 403 without one",
    ),
)

#: The rows of :data:`CAUSES` by code.
BY_CODE = {cause.code: cause for cause in CAUSES}
#: The rows of :data:`CAUSES` by the provider code they explain.
BY_PROVIDER_CODE = {code: cause for cause in CAUSES for code in cause.provider_codes}

_PROVIDER_CODE = re.compile(r"\b(AADSTS\d{4,9}|AADB2C\d{4,9})\b")


def diagnose(code: str, evidence: str = "") -> Diagnosis:
    """The :class:`Diagnosis` for the cause ``code``, with ``evidence``.

    :raises KeyError: no cause has that code.
    """
    return Diagnosis(BY_CODE[code], evidence)


def report(found: Diagnosis, what: str = "Sign-in refused") -> None:
    """Write ``found`` to the log as one WARNING line."""
    logger.warning("%s %s", what, found.log_line())


# --- evidence from the request ---------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _shown(value: str) -> str:
    """Request-supplied text (a Host header) fit for the evidence: one line, capped."""
    return one_line(value, MAX_EVIDENCE)


def request_origin() -> str:
    """The current request's scheme and host, as the app sees them."""
    return f"{request.scheme}://{request.host}".lower()


def session_kept() -> bool | None:
    """Whether the session cookie that came back named a session the store has.

    :return: ``True``: it did, or no session cookie came back; ``False``: the
        store had no such session (Flask-Session then starts a new one under a
        new id); ``None``: the app's session interface does not tell.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    value = request.cookies.get(app.session_interface.get_cookie_name(app))
    if not value:
        return True
    sid = getattr(session, "sid", None)
    if not isinstance(sid, str) or not sid:
        return None
    # Flask-Session's cookie is the id, or the id and a signature after a dot.
    return value == sid or value.startswith(sid + ".")


def _app_cookies_came_back(trace: Trace) -> bool:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return bool(request.cookies.get(app.session_interface.get_cookie_name(app))) or trace.any_cookie


def _cookies_are_secure() -> bool:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return bool(app.session_interface.get_cookie_secure(app))


# --- what the callback shows -----------------------------------------------------------------


def unmatched_callback(trace: Trace, *, redirect_uri: str, ttl: int, keep: int) -> Diagnosis:
    """Why a callback found no pending sign-in for its state.

    :param trace: what the browser's sign-in cookies say of the state
        (:meth:`~identity_flask.pending.PendingSignIns.trace`).
    :param redirect_uri: the redirect URI the app sends.
    :param ttl: the sign-in timeout, in seconds.
    :param keep: how many sign-ins a browser may have pending.
    """
    here = request_origin()
    if not _app_cookies_came_back(trace):
        expected = _origin(redirect_uri)
        if expected != here:
            return diagnose(
                "host_mismatch",
                f"The callback came to {_shown(here)}; the redirect URI is {_shown(redirect_uri)}.",
            )
        if request.scheme == "http" and _cookies_are_secure():
            return diagnose("secure_cookie_http", f"The callback came to {_shown(here)}; SESSION_COOKIE_SECURE is on.")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        interface = app.session_interface
        return diagnose(
            "no_cookie",
            f"The callback came to {_shown(here)}; the cookies are SameSite={interface.get_cookie_samesite(app)}, "
            f"domain {interface.get_cookie_domain(app) or 'this host only'}, path {interface.get_cookie_path(app)}.",
        )
    if trace.cookie == "unreadable":
        return diagnose("key_mismatch")
    age = None if trace.started_at is None else max(0, int(trace.now - trace.started_at))
    if trace.fate == "used":
        return diagnose("already_used", f"This browser started it {age} s ago and has finished it since.")
    if trace.fate == "superseded":
        return diagnose("superseded", f"IDENTITY_MAX_PENDING_SIGN_INS is {keep}.")
    if age is not None and age >= ttl:
        return diagnose("expired", f"It started {age} s ago; IDENTITY_SIGN_IN_TIMEOUT is {ttl} s.")
    if trace.started_on is not None and trace.started_on != here:
        return diagnose(
            "host_mismatch", f"It started on {_shown(trace.started_on)}; the callback came to {_shown(here)}."
        )
    return diagnose("unknown_state", f"{trace.other_cookies} other sign-in cookies came back.")


def start_warning(started_on: str, redirect_uri: str) -> Diagnosis | None:
    """A sign-in about to start at ``started_on`` whose cookies will not reach the callback.

    Browsers send a cookie only to the host that set it (ports aside), or to the
    hosts ``SESSION_COOKIE_DOMAIN`` covers: a sign-in started on ``127.0.0.1``
    cannot finish on ``localhost``.
    """
    start_host = (urlsplit(started_on).hostname or "").lower()
    target_host = (urlsplit(redirect_uri).hostname or "").lower()
    if not start_host or not target_host or start_host == target_host:
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    domain = str(app.session_interface.get_cookie_domain(app) or "").lstrip(".").lower()
    if domain and (target_host == domain or target_host.endswith("." + domain)):
        return None
    return diagnose(
        "host_mismatch",
        f"This sign-in started on {_shown(started_on)}, but the redirect URI is {_shown(redirect_uri)}: "
        "the browser will not send this host's cookies to the callback.",
    )


# --- the provider's errors -------------------------------------------------------------------


def provider_failure(error: str, description: str, *, redirect_uri: str | None = None) -> Diagnosis | None:
    """The cause of a provider's error answer, if its description names a known code.

    :param error: the OAuth ``error``.
    :param description: the ``error_description`` (Entra's begin ``AADSTSnnnn:``).
    :param redirect_uri: the redirect URI sent with the sign-in (not a secret): shown
        for ``AADSTS50011``.
    :return: ``None`` for codes the table does not know.
    """
    for match in _PROVIDER_CODE.finditer(description[:2000]):
        cause = BY_PROVIDER_CODE.get(match.group(1))
        if cause is None:
            continue
        evidence = f"The provider answered {match.group(1)} ({_shown(error)})."
        if cause.code == "redirect_uri_mismatch" and redirect_uri:
            evidence += f" The redirect_uri sent was {_shown(redirect_uri)}."
        return Diagnosis(cause, evidence)
    return None


def token_endpoint_failure(error: str, description: str, *, redirect_uri: str | None = None) -> Diagnosis | None:
    """The cause of the token endpoint's error answer to a code: :func:`provider_failure`'s, or for an
    ``invalid_client`` that carries no provider code at all (providers other than Entra ID), ``client_rejected``.
    """
    found = provider_failure(error, description, redirect_uri=redirect_uri)
    if found is None and error == "invalid_client" and not _PROVIDER_CODE.search(description[:2000]):
        return diagnose("client_rejected", "The token endpoint answered invalid_client.")
    return found


# --- login loops -------------------------------------------------------------------------------


def repeated_sign_in(finished: Sequence[tuple[float, bool]], *, lost: bool) -> Diagnosis | None:
    """Whether the sign-in finishing now repeats others because sessions are lost.

    A user signing in again while signed in, or after signing out, sends a
    session cookie the store knows, or none: only a session cookie naming a
    session the store does not have counts.

    :param finished: the browser's recent finished sign-ins, oldest first: how many seconds ago,
        and whether each found the session of the one before lost (kept in the
        pending sign-ins' record, which a store losing sessions does not touch).
    :param lost: whether this callback's session cookie named a session the store does not have.
    :return: ``login_loop`` when this would be the :data:`LOOP_SIGN_INS`-th sign-in
        finished within :data:`LOOP_WINDOW` seconds; ``session_lost`` when a
        sign-in finished a short time ago and its session is already gone;
        ``None`` otherwise.
    """
    if not lost or not finished:
        return None
    # Newest first. A loop: the sign-ins before this one within the window, each but the
    # first of them finding the session of the one before lost, as this one does. A session
    # ended for a reason of its own (the provider's front-channel sign-out, say) after healthy
    # sign-ins is one loss, not a loop.
    recent = [entry for entry in reversed(finished) if 0 <= entry[0] < LOOP_WINDOW][: LOOP_SIGN_INS - 1]
    if len(recent) == LOOP_SIGN_INS - 1 and all(was_lost for _age, was_lost in recent[:-1]):
        return diagnose(
            "login_loop",
            f"{len(recent)} sign-ins finished in this browser in the last {int(recent[-1][0]) + 1} s, "
            "and its session was missing again.",
        )
    last = min(age for age, _lost in finished)
    return diagnose("session_lost", f"This browser finished a sign-in {max(0, int(last))} s ago.")


# --- the docs page -------------------------------------------------------------------------------

_PAGE_HEAD = """\
# Troubleshooting

<!-- Generated from the table in identity_flask/diagnosis.py; do not edit here. After
changing the table, regenerate this page:
python -c "from identity_flask.diagnosis import troubleshooting_page as p; print(p(), end='')" > docs/troubleshooting.md
-->

When a sign-in fails, identity_flask tells why. Each cause below has a short
code, which is

- in a WARNING log line (of a logger under `identity_flask`), as
  `[cause=<code>, for the <who>]`, with what the request showed (hosts, ages,
  the redirect URI sent) and the fix, never a session id, state, code or
  token;
- in the JSON body that callers which do not want HTML get, as `cause`
  (beside `error` and `error_description`);
- on the error page in debug mode (`app.debug`), with the cause and the fix.
  In production the page stays generic: read the log.

A sign-in whose cookies cannot reach the redirect URI's host (the app
opened at `127.0.0.1` while the redirect URI is on `localhost`) is logged as
soon as it starts, as "Sign-in cannot finish" with the cause `host_mismatch`.

This page and the code share one table (`identity_flask.diagnosis.CAUSES`),
so they cannot drift apart.
"""

_SECTION_INTRO = {
    "callback": (
        "The callback (the redirect URI) came with a state for which this browser has no "
        "sign-in pending. Sign-ins in flight live in short-lived encrypted cookies of their "
        "own (see {doc}`sessions`), so the evidence is which cookies came back and what they say."
    ),
    "loop": (
        "A browser sent to sign in again right after signing in, because its session did not "
        "survive to the next request. A sign-in whose browser sends a session cookie the store "
        "does not have is logged; if {loop} sign-ins already finished in that browser within the "
        "last {window} seconds, it is stopped with the diagnosis instead. A user signing in again "
        "while signed in, or after signing out, is never counted."
    ),
    "provider": (
        "The provider answered with an error, at the callback (`error` and `error_description` "
        "in the query) or when the code was redeemed. The status is the one the provider's "
        "`error` calls for ({doc}`errors`); codes the table does not know keep it, with no `cause`."
    ),
}


def troubleshooting_page() -> str:
    """The docs' troubleshooting page (Markdown), rendered from :data:`CAUSES`."""
    parts = [_PAGE_HEAD]
    for section, heading in SECTIONS.items():
        parts.append(f"\n## {heading}\n\n")
        parts.append(_SECTION_INTRO[section].format(doc="{doc}", loop=LOOP_SIGN_INS - 1, window=LOOP_WINDOW) + "\n")
        for cause in (c for c in CAUSES if c.section == section):
            codes = ", ".join(cause.provider_codes)
            heading_text = f"{codes}: {cause.title}" if codes else cause.title
            parts.append(f"\n(cause-{cause.code})=\n### {heading_text}\n\n")
            parts.append(f"Code\n: `{cause.code}`\n\n")
            parts.append(f"For\n: {AUDIENCES[cause.audience]}\n\n")
            if cause.answer:
                parts.append(f"Answer\n: {cause.answer}\n\n")
            parts.append(f"Cause\n: {cause.summary}\n\n")
            parts.append(f"Fix\n: {cause.fix}\n")
    return "".join(parts)
