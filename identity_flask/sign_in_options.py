"""The options a sign-in may be started with, checked wherever they come from.

An app sets them once (``prompt``, ``domain_hint``), a protected view asks for
them (:meth:`~identity_flask.Auth.login_required`), or a link carries them to
the login view (``url_for("identity.login", login_hint=...)``). The first two
are checked when the app starts and raise
:class:`~identity_flask.errors.ConfigurationError`; the login view checks what
a request carries and answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Values of ``prompt`` the provider understands.
PROMPTS = ("login", "select_account", "consent", "create", "none")

#: The longest ``login_hint`` passed on: a user principal name or e-mail address
#: (at most 113 characters in Entra ID) or the id token's opaque ``login_hint`` claim.
MAX_LOGIN_HINT = 512

#: A DNS name, as ``domain_hint`` takes one (``contoso.com``), or Entra's
#: ``organizations`` / ``consumers``.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}\Z)(?:{_LABEL}\.)*{_LABEL}")

#: Entra ID's authentication context ids: ``c1`` to ``c99``.
_AUTH_CONTEXT = re.compile(r"c[1-9][0-9]?")

#: The longest ``max_age`` accepted: a year, in seconds.
MAX_MAX_AGE = 365 * 24 * 3600
_SECONDS = re.compile(r"[0-9]{1,9}")


class BadOption(ValueError):
    """An option's value is not one the provider may be sent; the message says why.

    :param option: the option's name, for messages that do not repeat the value.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def prompt(value: Any) -> str | None:
    """A ``prompt`` value, or ``None``.

    :raises BadOption: not one of :data:`PROMPTS`.
    """
    if value is None or value == "":
        return None
    if value not in PROMPTS:
        raise BadOption("prompt", f"prompt must be one of {', '.join(PROMPTS)}, got {value!r}")
    return str(value)


def login_hint(value: Any) -> str | None:
    """A ``login_hint``: the account to preselect (``user@contoso.com``), or ``None``.

    :raises BadOption: not a string, too long, or holding control characters.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_LOGIN_HINT or not value.isprintable() or value != value.strip():
        raise BadOption("login_hint", f"login_hint must be an account name of at most {MAX_LOGIN_HINT} characters")
    return value


def domain_hint(value: Any) -> str | None:
    """A ``domain_hint``: the organization's domain (``contoso.com``) to skip the
    home-realm discovery page, or ``None``.

    :raises BadOption: not a domain name.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DOMAIN.fullmatch(value):
        raise BadOption("domain_hint", "domain_hint must be a domain name such as contoso.com")
    return value.lower()


def max_age(value: Any) -> int | None:
    """The most seconds since the user last entered their credentials, or ``None``.

    :raises BadOption: not a whole number from 0 to :data:`MAX_MAX_AGE`.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MAX_AGE:
        raise BadOption("max_age", f"max_age must be a whole number of seconds from 0 to {MAX_MAX_AGE}, got {value!r}")
    return value


def auth_contexts(value: Any) -> tuple[str, ...]:
    """Entra ID authentication context ids (``c1`` ... ``c99``), sorted; empty for none.

    :raises BadOption: a value that is not such an id.
    """
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else (value,)
    if not all(isinstance(v, str) and _AUTH_CONTEXT.fullmatch(v) for v in values):
        raise BadOption("acrs", f"acrs must hold authentication context ids c1 to c99, got {value!r}")
    return tuple(sorted(set(values)))


def acrs_request(contexts: Iterable[str]) -> dict[str, Any]:
    """The claims request that asks the id token for ``contexts`` (Entra's ``acrs`` claim)."""
    wanted = sorted(contexts)
    asked: dict[str, Any] = {"essential": True}
    if len(wanted) == 1:
        asked["value"] = wanted[0]
    else:
        asked["values"] = wanted
    return {"id_token": {"acrs": asked}}


def acrs_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The authentication contexts the user's sign-in met: the ``acrs`` claim, when it is a list of strings."""
    value = claims.get("acrs")
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return frozenset()
