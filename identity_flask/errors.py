"""Errors: one for bad configuration, and HTTP errors raised while handling requests.

The request-time errors are werkzeug :class:`~werkzeug.exceptions.HTTPException`
subclasses, so an app can take them over with ``@app.errorhandler(IdentityError)``.
Left alone, they render the template ``identity/auth_error.html`` (which an app
overrides by shipping its own file of that name) or, for a caller that does not
want HTML, a JSON body ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from flask import current_app, has_app_context, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Response

from .diagnosis import Diagnosis
from .negotiation import wants_html


class ConfigurationError(RuntimeError):
    """The extension is configured wrongly; the message says how to fix it."""


class IdentityError(HTTPException):
    """An error met while signing a user in or out, or getting a token.

    :param description: what happened, for the person reading the page. It
        may come from the provider, so it is always escaped.
    :param error: an OAuth 2.0 error code such as ``access_denied``.
    :param diagnosis: why it happened and what fixes it (see :mod:`identity_flask.diagnosis`):
        its code goes into the JSON body as ``cause``; the cause and the fix are shown
        only in debug mode.
    """

    #: None here, so that ``@app.errorhandler(IdentityError)`` is filed by class and
    #: takes every subclass; each subclass sets its own status.
    code: int | None = None
    #: The OAuth 2.0 error code, for the page and the JSON body.
    error = "invalid_request"
    #: The page's heading.
    title = "Sign-in failed"
    #: Headers sent with the error, besides the content type.
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: Answer in JSON whoever asks (set for errors met in a web API's views).
    json_only = False
    #: Why it happened, when the extension can tell (:mod:`identity_flask.diagnosis`).
    diagnosis: Diagnosis | None = None

    def __init__(
        self, description: str | None = None, *, error: str | None = None, diagnosis: Diagnosis | None = None
    ) -> None:
        super().__init__(description)
        if error:
            self.error = error
        if diagnosis is not None:
            self.diagnosis = diagnosis

    @property
    def status(self) -> int:
        """The HTTP status sent: the class's ``code``, 400 for the base class."""
        return self.code or 400

    def get_headers(self, environ: Any = None, scope: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), *self.extra_headers]

    def as_dict(self) -> dict[str, Any]:
        """The JSON body sent to callers that do not want HTML: with ``cause`` when the
        extension knows it, and the diagnosis and the fix too in debug mode."""
        body: dict[str, Any] = {"error": self.error, "error_description": self.description}
        if self.diagnosis is not None:
            body["cause"] = self.diagnosis.code
            if has_app_context() and current_app.debug:
                body["diagnosis"] = " ".join(filter(None, (self.diagnosis.summary, self.diagnosis.evidence)))
                body["fix"] = self.diagnosis.fix
        return body

    def get_response(  # type: ignore[override]
        self,
        environ: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> SansIOResponse:
        headers = [(k, v) for k, v in self.get_headers(environ, scope) if k.lower() != "content-type"]
        if self.json_only or not wants_html():
            body = json.dumps(self.as_dict())
            return Response(body, self.status, [*headers, ("Content-Type", "application/json")])
        state = current_app.extensions.get("identity")
        page = render_template(
            "identity/auth_error.html",
            error=self.error,
            error_description=self.description,
            title=self.title,
            status=self.status,
            retry_url=state.login_url() if state is not None else None,
            reset_password_url=state.reset_password_url() if state is not None else None,
            diagnosis=self.diagnosis if current_app.debug else None,
        )
        return Response(page, self.status, [*headers, ("Content-Type", "text/html; charset=utf-8")])


class SignInError(IdentityError):
    """The callback could not be matched to a sign-in this browser started,
    was malformed, or the provider refused the authorization code."""

    code = 400


class SignInLoop(SignInError):
    """A browser kept being sent to sign in again right after signing in (its session
    did not survive to the next request), and was stopped rather than sent round again.

    .. versionadded:: 0.1
    """

    error = "login_loop"
    title = "Sign-in keeps starting over"


class AccessDenied(IdentityError):
    """The user, or the provider on their behalf, declined the sign-in."""

    code = 403
    error = "access_denied"
    title = "Sign-in was cancelled"


class RoleRequired(IdentityError):
    """The signed-in user holds none of the app roles a view asks for."""

    code = 403
    error = "insufficient_role"
    title = "Access denied"


class GroupRequired(IdentityError):
    """The signed-in user is a member of none of the groups a view asks for."""

    code = 403
    error = "insufficient_group"
    title = "Access denied"


class GroupsUnreadable(IdentityError):
    """The user's group memberships could not be read from Microsoft Graph, which
    refused (no permission or consent); the view is not let through.
    """

    code = 403
    error = "groups_unavailable"
    title = "Access denied"


class TenantNotAllowed(IdentityError):
    """The user signed in from a tenant the app does not accept (``allowed_tenants``)."""

    code = 403
    error = "tenant_not_allowed"
    title = "Access denied"


class NotSignedIn(IdentityError):
    """A caller that does not want HTML asked for a protected view without a session."""

    code = 401
    error = "login_required"
    title = "Sign-in required"
    extra_headers = (("WWW-Authenticate", 'Bearer realm="identity"'),)


class ProviderError(IdentityError):
    """The identity provider answered with a failure of its own."""

    code = 502
    error = "server_error"
    title = "The sign-in service failed"


class SessionStoreUnavailable(IdentityError):
    """The server-side session store (Redis, ...) could not be reached."""

    code = 503
    error = "temporarily_unavailable"
    title = "The site is temporarily unavailable"
    extra_headers = (("Retry-After", "30"),)


class ProviderUnavailable(IdentityError):
    """The identity provider could not be reached in time."""

    code = 503
    error = "temporarily_unavailable"
    title = "The sign-in service is unavailable"
    extra_headers = (("Retry-After", "30"),)


class GroupsUnavailable(ProviderUnavailable):
    """Microsoft Graph could not be reached, or failed, while reading the user's
    group memberships; the view is not let through.
    """

    title = "Group memberships are unavailable"


def _quoted(value: str) -> str:
    """``value`` as an RFC 7235 quoted string (no line breaks)."""
    text = " ".join(value.split())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BearerTokenError(IdentityError):
    """A web API refused a request's bearer token: missing or not acceptable (401),
    or lacking the scope, role or caller a view needs (403).

    Always answered in JSON, with an RFC 6750 ``WWW-Authenticate: Bearer`` challenge.

    :param realm: the challenge's realm (the API's Application ID URI).
    :param scopes: the full scopes a client should request, for the challenge.
    :param claims: a claims challenge to pass on to the caller (base64 JSON).
    """

    code = 401
    error = "invalid_token"
    title = "Unauthorized"
    json_only = True

    def __init__(
        self,
        description: str | None = None,
        *,
        error: str | None = "invalid_token",
        status: int = 401,
        realm: str = "",
        scopes: tuple[str, ...] = (),
        claims: str | None = None,
    ) -> None:
        super().__init__(description, error=error or None)
        self.code = status
        self.has_error = error is not None
        parts = [f"realm={_quoted(realm)}"]
        if error is not None:
            parts.append(f"error={_quoted(error)}")
            if description:
                parts.append(f"error_description={_quoted(description)}")
        if scopes:
            parts.append(f"scope={_quoted(' '.join(scopes))}")
        if claims:
            parts.append(f"claims={_quoted(claims)}")
        self.extra_headers = (("WWW-Authenticate", "Bearer " + ", ".join(parts)),)

    def as_dict(self) -> dict[str, Any]:
        if not self.has_error:
            return {"error": "unauthorized", "error_description": self.description}
        return super().as_dict()


class ClaimsChallenge(IdentityError):
    """A further API wants a token with more claims than the one it was given.

    Microsoft Entra's continuous access evaluation and conditional access
    answer ``401`` with ``WWW-Authenticate: Bearer error="insufficient_claims",
    claims="<base64 JSON>"``. Raise this from a view (see :meth:`from_header`):
    in a page, the browser goes through sign-in asking for those claims and
    comes back to the same page; in a web API (:class:`~identity_flask.ApiAuth`),
    the caller gets the challenge passed on.

    :param claims: the claims request, as JSON text.
    :param scopes: the scopes of the token the view needs again.
    """

    code = 401
    error = "insufficient_claims"
    title = "Sign-in required"

    def __init__(self, claims: str, *, scopes: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__("The resource asks for a new sign-in that satisfies more conditions.")
        self.claims = claims
        self.scopes = tuple(scopes)
        self.extra_headers = (
            (
                "WWW-Authenticate",
                f'Bearer realm="", error="insufficient_claims", claims={_quoted(self.encoded())}',
            ),
        )

    def encoded(self) -> str:
        """The claims as the challenge carries them: base64 of the JSON text."""
        return base64.b64encode(self.claims.encode()).decode()

    @classmethod
    def from_header(cls, www_authenticate: str, *, scopes: tuple[str, ...] | list[str] = ()) -> ClaimsChallenge | None:
        """The claims challenge in a further API's ``WWW-Authenticate`` header, if it holds one.

        :return: ``None`` unless the header says ``error="insufficient_claims"``
            with a ``claims`` value that is base64 of a JSON object.
        """
        fields = dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', www_authenticate or ""))
        if fields.get("error") != "insufficient_claims" or not fields.get("claims"):
            return None
        claims = decode_claims(fields["claims"])
        return None if claims is None else cls(claims, scopes=scopes)


#: Longest claims request accepted, as JSON text (Entra's are a few hundred bytes; the
#: request travels in the pending sign-in's cookie).
MAX_CLAIMS_LENGTH = 2048


def decode_claims(value: str) -> str | None:
    """The JSON text of a base64 (or base64url) claims request, or ``None`` if it is not one."""
    if not value or len(value) > MAX_CLAIMS_LENGTH * 2:
        return None
    try:
        text = base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4)).decode()
        parsed = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(parsed, dict) or len(text) > MAX_CLAIMS_LENGTH:
        return None
    return json.dumps(parsed, separators=(",", ":"))
