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
#: Group memberships read from Microsoft Graph: who, when, for which groups, and the ones held.
GROUPS_KEY = "_identity_groups"
#: The last step-up sign-in a view asked for: "<what> <time>", for the loop check.
STEP_UP_KEY = "_identity_step_up"
KEYS = (USER_KEY, ACCOUNT_KEY, CACHE_KEY, CLAIMS_KEY, GROUPS_KEY, STEP_UP_KEY)
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


def step_up_looped(session: Session, what: str, user: dict[str, Any]) -> bool:
    """Whether the user signed in again for ``what`` and still does not meet it.

    ``True`` when a step-up for ``what`` was asked while the user held one id
    token, and they now hold another: the provider answered and did not do
    what was asked. The record is then dropped, so a later visit asks again.
    Otherwise records the step-up about to be asked and returns ``False``.

    :param what: what the view asks, e.g. ``"max_age=300"`` or ``"acrs=c1"``.
    :param user: the claims of the user's id token now.
    """
    token = _sign_in_of(user)
    last = session.get(STEP_UP_KEY)
    if isinstance(last, str):
        asked, _, before = last.rpartition(" ")
        if asked == what and before != token:
            del session[STEP_UP_KEY]
            return True
    session[STEP_UP_KEY] = f"{what} {token}"
    return False


def _sign_in_of(user: dict[str, Any]) -> str:
    """A short name for the sign-in behind ``user``: its id token's ``nonce`` (new at every
    sign-in), else its ``iat``."""
    mark = user.get("nonce")
    if not isinstance(mark, str) or not mark:
        mark = str(user.get("iat"))
    return hashlib.sha256(mark.encode()).hexdigest()[:16]


def step_up_met(session: Session, what: str) -> None:
    """Forget the step-up asked for ``what``, now met (writes only when one was recorded)."""
    last = session.get(STEP_UP_KEY)
    if isinstance(last, str) and last.rpartition(" ")[0] == what:
        del session[STEP_UP_KEY]


def cached_groups(session: Session, user: str, asked: str, now: float, max_age: float) -> frozenset[str] | None:
    """The memberships kept for ``user`` and the groups named ``asked``, if read less than ``max_age`` seconds ago.

    :param user: who the memberships must be of (``oid``, else ``sub``).
    :param asked: :func:`identity_flask.groups.digest` of the groups they were read for.
    """
    entry = session.get(GROUPS_KEY)
    if not isinstance(entry, dict) or entry.get("user") != user or entry.get("asked") != asked:
        return None
    at, held = entry.get("at"), entry.get("held")
    if not isinstance(at, (int, float)) or not 0 <= now - at < max_age or not isinstance(held, list):
        return None
    return frozenset(g for g in held if isinstance(g, str))


def store_groups(session: Session, user: str, asked: str, held: frozenset[str], now: float) -> None:
    """Keep the memberships just read for ``user`` (see :func:`cached_groups`)."""
    session[GROUPS_KEY] = {"user": user, "asked": asked, "at": int(now), "held": sorted(held)}


def drop_token_cache(session: Session) -> None:
    """Forget the user's unreadable token cache; they stay signed in and sign in again for tokens."""
    session.pop(CACHE_KEY, None)


def sign_in(session: Session, claims: dict[str, Any], account_id: str | None, cache: Cache) -> None:
    """Store a freshly signed-in user; memberships read for the one before are dropped."""
    session.pop(GROUPS_KEY, None)
    session[USER_KEY] = claims
    session[ACCOUNT_KEY] = account_id
    session[CACHE_KEY] = cache


def sign_out(session: Session) -> None:
    """Forget everything: user, token cache and the app's own keys."""
    session.clear()
