"""Errors: one for bad configuration, and HTTP errors raised while handling requests.

The request-time errors are werkzeug :class:`~werkzeug.exceptions.HTTPException`
subclasses, so an app can take them over with ``@app.errorhandler(IdentityError)``.
Left alone, they render the template ``identity/auth_error.html`` (which an app
overrides by shipping its own file of that name) or, for a caller that does not
want HTML, a JSON body ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, render_template
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.wrappers import Response

from .negotiation import wants_html


class ConfigurationError(RuntimeError):
    """The extension is configured wrongly; the message says how to fix it."""


class IdentityError(HTTPException):
    """An error met while signing a user in or out, or getting a token.

    :param description: what happened, for the person reading the page. It
        may come from the provider, so it is always escaped.
    :param error: an OAuth 2.0 error code such as ``access_denied``.
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

    def __init__(self, description: str | None = None, *, error: str | None = None) -> None:
        super().__init__(description)
        if error:
            self.error = error

    @property
    def status(self) -> int:
        """The HTTP status sent: the class's ``code``, 400 for the base class."""
        return self.code or 400

    def get_headers(self, environ: Any = None, scope: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), *self.extra_headers]

    def as_dict(self) -> dict[str, Any]:
        """The JSON body sent to callers that do not want HTML."""
        return {"error": self.error, "error_description": self.description}

    def get_response(  # type: ignore[override]
        self,
        environ: Any = None,
        scope: dict[str, Any] | None = None,
    ) -> SansIOResponse:
        headers = [(k, v) for k, v in self.get_headers(environ, scope) if k.lower() != "content-type"]
        if not wants_html():
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
        )
        return Response(page, self.status, [*headers, ("Content-Type", "text/html; charset=utf-8")])


class SignInError(IdentityError):
    """The callback could not be matched to a sign-in this browser started,
    was malformed, or the provider refused the authorization code."""

    code = 400


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
