"""Authorization checks on a signed-in user's id token claims: app roles and tenants.

Pure checks of claims against what a view or the settings ask for; the
extension and the views call them and answer with the errors they raise.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .errors import ConfigurationError, TenantNotAllowed

logger = logging.getLogger(__name__)


def roles_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The app roles the user holds: the ``roles`` claim, when it is a list of strings.

    Anything else counts as no roles, so that a string is never matched
    character by character (``"Admin"`` holding ``"A"``). Such a claim is
    logged once per process and kind of value.

    :param claims: the user's id token claims.
    """
    roles = claims.get("roles")
    if roles is None:
        return frozenset()
    if isinstance(roles, list):
        if all(isinstance(role, str) for role in roles):
            return frozenset(roles)
        _ignore_roles("list holding non-strings")
    else:
        _ignore_roles(type(roles).__name__)
    return frozenset()


@functools.cache
def _ignore_roles(kind: str) -> None:
    logger.warning(
        "Ignoring a 'roles' claim that is a %s, not a list of strings: the user holds no app roles. "
        "Check the provider's claim mapping.",
        kind,
    )


def required_roles(roles: Iterable[str] | None) -> frozenset[str]:
    """The roles a view asks for, checked when it is decorated.

    :raises ConfigurationError: ``roles`` is a string, or holds something else.
    """
    if roles is None:
        return frozenset()
    if isinstance(roles, str):
        raise ConfigurationError(
            f"login_required(roles=...) takes a list of role names, got the string {roles!r}: write roles=[{roles!r}]."
        )
    wanted = tuple(roles)
    if not all(isinstance(role, str) for role in wanted):
        raise ConfigurationError(f"login_required(roles=...) takes a list of role names (strings), got {wanted!r}.")
    return frozenset(wanted)


def tenant_allowed(claims: Mapping[str, Any], allowed: Collection[str]) -> bool:
    """Whether the user's tenant (the ``tid`` claim) may use the app.

    :param allowed: lower-case tenant ids, as settings resolve them; empty
        lets every tenant in.
    """
    if not allowed:
        return True
    tenant = claims.get("tid")
    return isinstance(tenant, str) and tenant.lower() in allowed


def check_tenant(claims: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Refuse a user whose tenant is not in ``allowed``.

    :raises TenantNotAllowed: a 403 page that names no tenant.
    """
    if tenant_allowed(claims, allowed):
        return
    logger.warning("Refused a user from tenant %r, which is not in allowed_tenants", claims.get("tid"))
    raise TenantNotAllowed(
        "Accounts of your organization cannot use this app. Sign in with an account of an organization it serves."
    )
