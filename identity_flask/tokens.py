"""A user's MSAL token cache as the session keeps it, and the requests that refresh it.

The cache is kept in the session as MSAL's own structure (a dict of sections,
``{"AccessToken": {key: entry}, "RefreshToken": ..., "Account": ...}``), not as
a serialized string: the session store decodes it with the rest of the
session, so serving a cached access token reads a few entries of a dict that
is already there. Nothing is hashed, parsed or remembered in the process, so
the cost of a page view does not depend on how many users one process serves.

MSAL itself is asked only when the cache holds no usable token (missing,
expired, or due for refresh by the provider's ``refresh_in``), and then one
request per user and process asks (see :class:`Refreshes`).
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import IdentityError

#: MSAL treats an access token with less than this many seconds left as expired;
#: so does the cache reader, which must answer exactly as MSAL would.
EXPIRY_MARGIN = 300

ACCESS_TOKEN = "AccessToken"
REFRESH_TOKEN = "RefreshToken"
ID_TOKEN = "IdToken"

Cache = dict[str, Any]


def cached_token(
    cache: Mapping[str, Any] | None,
    where: tuple[str, str, str],
    account: str,
    scopes: Sequence[str],
    now: float,
) -> dict[str, Any] | None:
    """The access token MSAL would serve from ``cache`` without a provider request, if any.

    Follows MSAL's own cache lookup: an access token of this ``account``, this
    client and authority (``where``: client id, MSAL's authority instance and
    tenant) whose granted scopes include every scope asked for, with more than
    :data:`EXPIRY_MARGIN` seconds left and not past its ``refresh_on``. An entry
    bound to a key (proof of possession) or to an extended cache key is never
    served here.

    :return: ``access_token``, ``token_type``, ``expires_in`` and the ``scopes``
        granted; ``None`` when MSAL must be asked.
    """
    if not cache:
        return None
    tokens = cache.get(ACCESS_TOKEN)
    if not isinstance(tokens, dict) or not tokens:
        return None
    client_id, instance, tenant = where
    exact = "-".join((account, instance, "accesstoken", client_id, tenant, " ".join(sorted(scopes)))).lower()
    first = tokens.get(exact)
    # The entry under the exact key first (MSAL's own preference), then every entry.
    entries = tokens.values() if first is None else itertools.chain((first,), tokens.values())
    some_scope = scopes[0] if scopes else ""
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        target = entry.get("target")
        if not isinstance(target, str) or some_scope not in target:
            continue  # a quick no, by substring; the test by word follows
        if (
            entry.get("home_account_id") != account
            or entry.get("client_id") != client_id
            or entry.get("environment") != instance
            or entry.get("realm") != tenant
            or "key_id" in entry
            or "ext_cache_key" in entry
        ):
            continue
        secret = entry.get("secret")
        if not isinstance(secret, str) or not secret:
            continue
        granted = target.split()
        if any(scope not in granted for scope in scopes):
            continue
        try:
            left = int(entry["expires_on"]) - now
            refresh_on = int(entry.get("refresh_on") or 0)
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if left < EXPIRY_MARGIN:
            continue
        if refresh_on and refresh_on < now:
            return None  # MSAL refreshes a token past its refresh_on while it still holds it
        token_type = entry.get("token_type")
        return {
            "access_token": secret,
            "token_type": token_type if isinstance(token_type, str) else "Bearer",
            "expires_in": int(left),
            "scopes": granted,
        }
    return None


def from_answer(answer: Mapping[str, Any], asked: Sequence[str]) -> dict[str, Any]:
    """What a view is given of MSAL's answer with a token: ``access_token``, ``token_type``,
    ``expires_in`` and the ``scopes`` granted (those asked for when the answer names none).
    The refresh token and the id token stay out of it."""
    return {
        "access_token": answer["access_token"],
        "token_type": answer.get("token_type", "Bearer"),
        "expires_in": int(answer.get("expires_in") or 0),
        "scopes": str(answer.get("scope") or "").split() or list(asked),
    }


def trimmed(cache: Mapping[str, Any], now: float, *, scope_free_refresh: bool = True) -> Cache:
    """``cache`` as the session keeps it: what MSAL needs to serve and refresh tokens, once.

    - id tokens go: their claims are kept decoded beside the cache (the signed-in
      user), and MSAL needs no id token to serve or refresh an access token;
    - access tokens past their expiry go (MSAL would drop them on its next look);
    - of the refresh tokens of one account and client, only the newest stays:
      Microsoft's refresh tokens are not bound to scopes, and every consent
      sign-in brings one more, each of them a provider request once revoked.
      Other OpenID providers may bind a refresh token to the scopes it was
      issued for (``scope_free_refresh=False``): there an older one goes only
      when a newer one covers all its scopes.
    """
    kept: Cache = {}
    for section, entries in cache.items():
        if section == ID_TOKEN:
            continue
        if section == ACCESS_TOKEN and isinstance(entries, dict):
            entries = {k: e for k, e in entries.items() if not _expired(e, now)}
        elif section == REFRESH_TOKEN and isinstance(entries, dict):
            entries = _newest_refresh_tokens(entries, scope_free_refresh)
        kept[section] = entries
    return kept


def merged(
    older: Mapping[str, Any] | None, newer: Mapping[str, Any], now: float, *, scope_free_refresh: bool = True
) -> Cache:
    """Two caches of one user in one, then :func:`trimmed`.

    Of two entries under one key the later one stays (by ``last_modification_time``
    or ``cached_at``), ``newer``'s on a tie: a cache refreshed elsewhere in the
    meantime keeps its rotated refresh token.
    """
    if not older:
        return trimmed(newer, now, scope_free_refresh=scope_free_refresh)
    combined: Cache = dict(older)
    for section, entries in newer.items():
        previous = combined.get(section)
        if isinstance(entries, dict) and isinstance(previous, dict):
            both = dict(previous)
            for key, entry in entries.items():
                if key not in both or _stamp(entry) >= _stamp(both[key]):
                    both[key] = entry
            combined[section] = both
        else:
            combined[section] = entries
    return trimmed(combined, now, scope_free_refresh=scope_free_refresh)


def _stamp(entry: Any) -> int:
    """When a cache entry was written, as far as it says; 0 when it does not."""
    if not isinstance(entry, dict):
        return 0
    try:
        return int(entry.get("last_modification_time") or entry.get("cached_at") or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def refresh_secrets(cache: Mapping[str, Any] | None) -> frozenset[str]:
    """The refresh tokens ``cache`` holds: which state of a user's cache it is, for
    telling whether a refresh started from the same one."""
    section = cache.get(REFRESH_TOKEN) if cache else None
    if not isinstance(section, dict):
        return frozenset()
    return frozenset(e["secret"] for e in section.values() if isinstance(e, dict) and isinstance(e.get("secret"), str))


def _expired(entry: Any, now: float) -> bool:
    try:
        return bool(int(entry["expires_on"]) < now)
    except (KeyError, TypeError, ValueError, OverflowError):
        return True


def _newest_refresh_tokens(entries: Mapping[str, Any], scope_free: bool) -> dict[str, Any]:
    """The refresh tokens worth keeping, per account, environment and client (or family).

    Newest first (on a tie the later entry, so the newer cache of :func:`merged`);
    with ``scope_free`` only the newest stays, otherwise each one whose scopes
    no newer one covers.
    """
    ranked: list[tuple[int, int, str, dict[str, Any]]] = []
    for position, (key, entry) in enumerate(entries.items()):
        if not isinstance(entry, dict):
            continue
        try:
            modified = int(entry.get("last_modification_time") or 0)
        except (TypeError, ValueError, OverflowError):
            modified = 0
        ranked.append((modified, position, key, entry))
    ranked.sort(reverse=True)
    kept: dict[str, Any] = {}
    covered: dict[tuple[str, str, str], list[set[str]]] = {}
    for _modified, _position, key, entry in ranked:
        client = entry.get("family_id") or entry.get("client_id")
        owner = (str(entry.get("home_account_id")), str(entry.get("environment")), str(client))
        target = set(str(entry.get("target") or "").split())
        newer = covered.setdefault(owner, [])
        if newer and (scope_free or any(target <= scopes for scopes in newer)):
            continue
        newer.append(target)
        kept[key] = entry
    return kept


#: Seconds a finished refresh is kept for requests of the same user that read their
#: session before the refreshing request stored the new cache.
LINGER_SECONDS = 5.0
#: Finished refreshes kept at most, whatever the rate of refreshes.
LINGER_ENTRIES = 1024


class Flight:
    """One user's refresh in this process, and the requests waiting for it."""

    __slots__ = ("cache", "failed_at", "failure", "lock", "refreshed_at", "source", "tokens", "users")

    def __init__(self) -> None:
        #: Held by the one request that asks MSAL; the others wait for it.
        self.lock = threading.Lock()
        #: Requests that joined and have not left yet.
        self.users = 0
        #: The user's cache as the last refresh left it, for the requests that waited;
        #: and the refresh tokens of the cache it started from (see :func:`refresh_secrets`).
        self.cache: Cache | None = None
        self.source: frozenset[str] = frozenset()
        #: The tokens the last refresh got, per scope set: (token, expires at), for the
        #: requests that waited for it; and when it ended (monotonic seconds).
        self.tokens: dict[tuple[str, ...], tuple[dict[str, Any], float]] = {}
        self.refreshed_at = -math.inf
        #: Why the last refresh failed at the provider, and when (monotonic seconds):
        #: shared with the requests that were waiting for it, and with no later one.
        self.failure: IdentityError | None = None
        self.failed_at = -math.inf


class Refreshes:
    """Parallel requests of one user that find no usable token share one refresh.

    The first asks MSAL (and the provider); the others wait for it, at most the
    provider timeout, then read what it got. A flight lives while requests are
    in it, then :data:`LINGER_SECONDS` more if it refreshed the cache (for
    requests that read the session before the new cache was stored), at most
    :data:`LINGER_ENTRIES` of them; so the process keeps nothing per user for
    long, and nothing that depends on how a request ends.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._lingering: collections.OrderedDict[str, tuple[Flight, float]] = collections.OrderedDict()

    def join(self, account: str) -> Flight:
        with self._lock:
            self._drop_expired()
            flight = self._flights.get(account)
            if flight is None:
                kept = self._lingering.pop(account, None)
                flight = kept[0] if kept is not None else Flight()
                self._flights[account] = flight
            flight.users += 1
            return flight

    def leave(self, account: str, flight: Flight) -> None:
        with self._lock:
            flight.users -= 1
            if flight.users > 0 or self._flights.get(account) is not flight:
                return
            del self._flights[account]
            if flight.cache is not None:
                self._lingering[account] = (flight, self.clock() + LINGER_SECONDS)
                self._lingering.move_to_end(account)
                while len(self._lingering) > LINGER_ENTRIES:
                    self._lingering.popitem(last=False)
            self._drop_expired()

    def _drop_expired(self) -> None:
        now = self.clock()
        while self._lingering:
            account, (_flight, until) = next(iter(self._lingering.items()))
            if until > now:
                break
            del self._lingering[account]

    def __len__(self) -> int:
        """Flights with requests in them, and finished ones still kept."""
        with self._lock:
            self._drop_expired()
            return len(self._flights) + len(self._lingering)
