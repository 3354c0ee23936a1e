"""What the extension keeps in a user's session, under its own keys.

- the signed-in user's id token claims and MSAL account id;
- their MSAL token cache, as MSAL's own structure (see :mod:`identity_flask.tokens`),
  written back only when it changed. It holds no id token: the claims above
  are the one copy of it.

Sign-ins that have started and not finished are not kept here but in an
encrypted cookie (see :mod:`identity_flask.pending`), so anonymous visitors
cost the store nothing.

Values are plain JSON-like data, as Flask-Session's serializer requires.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from .tokens import Cache

USER_KEY = "_identity_user"
ACCOUNT_KEY = "_identity_account"
CACHE_KEY = "_identity_token_cache"
KEYS = (USER_KEY, ACCOUNT_KEY, CACHE_KEY)

Session = MutableMapping[str, Any]


def get_user(session: Session) -> dict[str, Any] | None:
    """The signed-in user's claims, or ``None``."""
    user = session.get(USER_KEY)
    return user if isinstance(user, dict) else None


def account_id(session: Session) -> str | None:
    """The signed-in user's MSAL account id, or ``None``."""
    value = session.get(ACCOUNT_KEY)
    return value if isinstance(value, str) and value else None


def token_cache(session: Session) -> Cache | None:
    """The user's MSAL token cache, or ``None``.

    A session written by an earlier version holds the cache serialized; it is
    read once and kept in today's form.
    """
    value = session.get(CACHE_KEY)
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return None
        if isinstance(value, dict):
            session[CACHE_KEY] = value
    return value if isinstance(value, dict) and value else None


def store_token_cache(session: Session, cache: Cache) -> None:
    """Keep the user's token cache after MSAL changed it (a refresh, a new scope)."""
    session[CACHE_KEY] = cache


def sign_in(session: Session, claims: dict[str, Any], account_id: str | None, cache: Cache) -> None:
    """Store a freshly signed-in user."""
    session[USER_KEY] = claims
    session[ACCOUNT_KEY] = account_id
    session[CACHE_KEY] = cache


def sign_out(session: Session) -> None:
    """Forget everything: user, token cache and the app's own keys."""
    session.clear()
