"""What the extension keeps in a user's session, under its own keys.

- the signed-in user's id token claims and MSAL account id;
- their serialized MSAL token cache, written back only when it changed;
- the sign-ins this browser has started and not finished, keyed by OAuth
  ``state``, so that several tabs may sign in at once. Each expires, and only
  the newest few are kept.

Values are plain JSON-like data, as Flask-Session's serializer requires.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping
from typing import Any

USER_KEY = "_identity_user"
ACCOUNT_KEY = "_identity_account"
CACHE_KEY = "_identity_token_cache"
FLOWS_KEY = "_identity_flows"
KEYS = (USER_KEY, ACCOUNT_KEY, CACHE_KEY, FLOWS_KEY)

Session = MutableMapping[str, Any]


def get_user(session: Session) -> dict[str, Any] | None:
    """The signed-in user's claims, or ``None``."""
    user = session.get(USER_KEY)
    return user if isinstance(user, dict) else None


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
    """Forget everything: user, token cache, pending sign-ins and the app's own keys."""
    session.clear()


def add_flow(session: Session, state: str, entry: dict[str, Any], *, ttl: int, keep: int) -> None:
    """Remember a started sign-in; drop expired ones and all but the newest ``keep``."""
    now = int(time.time())
    flows = _live(_flows(session), now, ttl)
    flows[state] = {**entry, "created": now}
    newest = sorted(flows, key=lambda k: flows[k]["created"])[-keep:]
    session[FLOWS_KEY] = {k: flows[k] for k in newest}


def take_flow(session: Session, state: str, *, ttl: int) -> tuple[dict[str, Any] | None, bool]:
    """Remove and return the sign-in started with ``state``.

    :return: ``(entry, expired)``; ``entry`` is ``None`` when no such sign-in is pending.
    """
    now = int(time.time())
    flows = _flows(session)
    entry = flows.pop(state, None)
    if entry is None:
        return None, False
    live = _live(flows, now, ttl)
    if live:
        session[FLOWS_KEY] = live
    else:
        del session[FLOWS_KEY]
    return entry, _age(entry, now) >= ttl


def _age(entry: dict[str, Any], now: int) -> int:
    """Seconds since the sign-in ``entry`` was started."""
    return now - int(entry.get("created", 0))


def _live(flows: dict[str, Any], now: int, ttl: int) -> dict[str, Any]:
    """The pending sign-ins of ``flows`` that have not expired."""
    return {k: v for k, v in flows.items() if _age(v, now) < ttl}


def _flows(session: Session) -> dict[str, Any]:
    flows = session.get(FLOWS_KEY)
    return dict(flows) if isinstance(flows, dict) else {}
