"""What the extension keeps in a user's session, under its own keys.

- the signed-in user's id token claims and MSAL account id;
- their serialized MSAL token cache, written back only when it changed.

Sign-ins that have started and not finished are not kept here but in an
encrypted cookie (see :mod:`identity_flask.pending`), so anonymous visitors
cost the store nothing.

Values are plain JSON-like data, as Flask-Session's serializer requires.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

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


def token_cache(session: Session) -> str | None:
    """The user's serialized MSAL token cache, or ``None``."""
    value = session.get(CACHE_KEY)
    return value if isinstance(value, str) and value else None


def store_token_cache(session: Session, cache_state: str) -> None:
    """Keep the user's token cache after MSAL changed it (a refresh, a new scope)."""
    session[CACHE_KEY] = cache_state


def merge_caches(older: str | None, newer: str) -> str:
    """Combine two serialized token caches of one user; ``newer`` wins on each entry."""
    if not older:
        return newer
    merged: dict[str, Any] = json.loads(older)
    for section, entries in json.loads(newer).items():
        if isinstance(entries, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **entries}
        else:
            merged[section] = entries
    return json.dumps(merged)


def sign_in(session: Session, claims: dict[str, Any], account_id: str | None, cache_state: str) -> None:
    """Store a freshly signed-in user; pending sign-ins of other tabs are kept."""
    session[USER_KEY] = claims
    session[ACCOUNT_KEY] = account_id
    session[CACHE_KEY] = cache_state


def sign_out(session: Session) -> None:
    """Forget everything: user, token cache and the app's own keys."""
    session.clear()
