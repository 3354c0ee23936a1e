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
from collections.abc import Mapping, MutableMapping
from typing import Any

from .tokens import Cache

USER_KEY = "_identity_user"
ACCOUNT_KEY = "_identity_account"
CACHE_KEY = "_identity_token_cache"
#: The last claims sign-in: "<sha-256 of page and claims, 16 hex> <time>", for the loop check.
CLAIMS_KEY = "_identity_claims"
#: Group memberships read from Microsoft Graph: who, when, for which groups, and the ones held.
GROUPS_KEY = "_identity_groups"
#: The last step-up sign-in started: "<what it asked> <its nonce, hashed>", for the loop check.
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


def step_up_name(max_age: int | None, claims: str | None) -> str:
    """A short name for what a step-up sign-in asks: its ``max_age`` and claims request (JSON text)."""
    asked = hashlib.sha256((claims or "").encode()).hexdigest()[:16] if claims else "-"
    return f"{max_age if max_age is not None else '-'}/{asked}"


def note_step_up(session: Session, name: str, nonce: str) -> None:
    """Record that the sign-in being started, whose request carries ``nonce``, is a step-up for ``name``."""
    session[STEP_UP_KEY] = f"{name} {_short(nonce)}"


def step_up_answered(session: Session, name: str, user: dict[str, Any]) -> bool:
    """Whether the user's current sign-in is the step-up for ``name`` recorded by :func:`note_step_up`.

    When it is, and a view still finds it unmet, the provider answered without
    doing what was asked: the record is dropped (a later visit asks again) and
    ``True`` returned. The id token's ``nonce`` names its sign-in.
    """
    last = session.get(STEP_UP_KEY)
    nonce = user.get("nonce")
    if not (isinstance(last, str) and isinstance(nonce, str) and nonce):
        return False
    if last != f"{name} {_short(nonce)}":
        return False
    del session[STEP_UP_KEY]
    return True


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def step_up_met(session: Session) -> None:
    """Forget a recorded step-up once a view found the user's sign-in meets what it asks
    (writes only when one was recorded)."""
    if STEP_UP_KEY in session:
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


#: The longest ``login_hint`` claim sent back as ``logout_hint`` (Entra's are far shorter).
MAX_LOGOUT_HINT = 2048


def logout_hint(session: Mapping[str, Any]) -> str | None:
    """The signed-in user's ``login_hint`` claim (Entra's optional claim), to send back
    to the provider as ``logout_hint`` at sign-out; ``None`` without one."""
    user = session.get(USER_KEY)
    hint = user.get("login_hint") if isinstance(user, dict) else None
    return hint if isinstance(hint, str) and 0 < len(hint) <= MAX_LOGOUT_HINT else None


def provider_session(session: Mapping[str, Any]) -> tuple[str, str] | None:
    """The issuer (``iss``) and session id (``sid``) of the provider session the signed-in
    user's id token came from, or ``None`` when it named none.

    :param session: a session, or a session's data as its store holds it.
    """
    user = session.get(USER_KEY)
    if not isinstance(user, dict):
        return None
    issuer, sid = user.get("iss"), user.get("sid")
    if not isinstance(issuer, str) or not isinstance(sid, str) or not issuer or not sid:
        return None
    return issuer, sid
