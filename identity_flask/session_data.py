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

import hashlib
import json
from collections.abc import MutableMapping
from typing import Any

from .tokens import Cache

USER_KEY = "_identity_user"
ACCOUNT_KEY = "_identity_account"
CACHE_KEY = "_identity_token_cache"
#: The last claims sign-in: "<sha-256 of page and claims, 16 hex> <time>", for the loop check.
CLAIMS_KEY = "_identity_claims"
KEYS = (USER_KEY, ACCOUNT_KEY, CACHE_KEY, CLAIMS_KEY)
#: Seconds within which the same claims challenge on the same page counts as a loop.
CLAIMS_LOOP_SECONDS = 300

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


def note_claims_sign_in(session: Session, page: str, claims: str, now: float) -> bool:
    """Record a sign-in for ``claims`` from ``page``; ``False`` if the same one was made just before."""
    digest = hashlib.sha256(f"{page}\n{claims}".encode()).hexdigest()[:16]
    last = session.get(CLAIMS_KEY)
    if isinstance(last, str):
        seen, _, when = last.partition(" ")
        if seen == digest and when.isdigit() and now - int(when) < CLAIMS_LOOP_SECONDS:
            return False
    session[CLAIMS_KEY] = f"{digest} {int(now)}"
    return True


def drop_token_cache(session: Session) -> None:
    """Forget the user's unreadable token cache; they stay signed in and sign in again for tokens."""
    session.pop(CACHE_KEY, None)


def sign_in(session: Session, claims: dict[str, Any], account_id: str | None, cache: Cache) -> None:
    """Store a freshly signed-in user."""
    session[USER_KEY] = claims
    session[ACCOUNT_KEY] = account_id
    session[CACHE_KEY] = cache


def sign_out(session: Session) -> None:
    """Forget everything: user, token cache and the app's own keys."""
    session.clear()
