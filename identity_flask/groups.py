"""Group-based authorization: the groups a view asks for, and the user's memberships.

Microsoft Entra ID lists a user's groups in the id token's ``groups`` claim
when the app registration asks for it (Token configuration > Add groups claim),
but at most 200 of them. A user in more gets an overage marker instead of the
list: ``_claim_names`` naming ``groups`` (or ``hasgroups``). Checking such a
token's ``groups`` claim would refuse the very users with the most memberships,
so the extension then reads the user's transitive memberships from Microsoft
Graph (``/me/transitiveMemberOf``, page by page) with a token it gets for the
user, and keeps the answer in the session for a while. Only memberships of
groups the app's views ask about are kept: a few ids, whatever the user's count.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from .errors import ConfigurationError, GroupsUnavailable, GroupsUnreadable

logger = logging.getLogger(__name__)

#: The delegated permission that reads the signed-in user's own memberships.
GRAPH_PERMISSION = "User.Read"
#: Objects per page asked of Graph (its largest page).
PAGE_SIZE = 999
#: Pages read at most: 100 pages hold every membership Entra allows a user.
MAX_PAGES = 100
_GROUP_TYPE = "#microsoft.graph.group"


def required_groups(groups: Iterable[str] | None) -> frozenset[str]:
    """The groups a view asks for, as lower-case object ids, checked when it is decorated.

    :raises ConfigurationError: a string instead of a list, or something that is
        not a group's object id (a GUID; group names are not unique).
    """
    if groups is None:
        return frozenset()
    if isinstance(groups, str):
        raise ConfigurationError(
            f"login_required(groups=...) takes a list of group object ids, got the string {groups!r}: "
            f"write groups=[{groups!r}]."
        )
    wanted = set()
    for group in groups:
        try:
            wanted.add(str(uuid.UUID(group)))
        except (TypeError, ValueError, AttributeError):
            raise ConfigurationError(
                f"login_required(groups=...) takes group object ids (GUIDs, Microsoft Entra ID > Groups > "
                f"the group > Object ID), got {group!r}. Names are not unique, so they are not accepted."
            ) from None
    return frozenset(wanted)


def overage(claims: Mapping[str, Any]) -> bool:
    """Whether the id token left the groups out for having too many (Entra's overage marker)."""
    names = claims.get("_claim_names")
    return (isinstance(names, Mapping) and "groups" in names) or claims.get("hasgroups") is True


def in_token(claims: Mapping[str, Any]) -> frozenset[str] | None:
    """The groups the id token lists, lower-case; ``None`` when it carries the overage marker instead.

    A ``groups`` claim that is not a list of strings counts as no groups.
    """
    if overage(claims):
        return None
    groups = claims.get("groups")
    if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
        return frozenset(g.lower() for g in groups)
    return frozenset()


def digest(groups: Iterable[str]) -> str:
    """A short name for a set of groups: memberships kept for one set do not answer for another."""
    return hashlib.sha256(" ".join(sorted(groups)).encode()).hexdigest()[:16]


def graph_scopes(endpoint: str) -> tuple[str, ...]:
    """The scopes of the token that reads memberships from the Graph at ``endpoint``."""
    return (f"{endpoint}/{GRAPH_PERMISSION}",)


def read_memberships(
    http: requests.Session, endpoint: str, token: str, among: frozenset[str], timeout: float
) -> frozenset[str]:
    """The groups of ``among`` the user is a member of, directly or through other groups.

    Reads ``/me/transitiveMemberOf`` page by page, following only next links
    on ``endpoint`` (the token goes nowhere else).

    :param endpoint: Graph's root, e.g. ``https://graph.microsoft.com``.
    :param token: the user's access token for Graph.
    :raises GroupsUnreadable: Graph refused (no permission or consent): 403.
    :raises GroupsUnavailable: Graph could not be reached, failed, or answered
        something that is not a page of memberships: 503.
    """
    url: Any = f"{endpoint}/v1.0/me/transitiveMemberOf?$select=id&$top={PAGE_SIZE}"
    found: set[str] = set()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    for _ in range(MAX_PAGES):
        try:
            response = http.get(url, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            logger.warning("Microsoft Graph unreachable while reading group memberships: %s", type(exc).__name__)
            raise GroupsUnavailable("Your group memberships could not be read. Please try again in a moment.") from None
        if response.status_code in (401, 403):
            logger.warning(
                "Microsoft Graph refused to read group memberships (%s): grant the app the delegated "
                "permission %s on Microsoft Graph, with consent",
                response.status_code,
                GRAPH_PERMISSION,
            )
            raise GroupsUnreadable(
                "Your group memberships could not be read, so this page cannot let you in. "
                "Please contact the site's administrator."
            )
        page = _page(response)
        for item in page["value"]:
            if isinstance(item, Mapping) and item.get("@odata.type") == _GROUP_TYPE and isinstance(item.get("id"), str):
                group = item["id"].lower()
                if group in among:
                    found.add(group)
        url = page.get("@odata.nextLink")
        if url is None:
            return frozenset(found)
        if not isinstance(url, str) or not url.startswith(endpoint + "/"):
            logger.warning("Microsoft Graph sent a next page link off %s; it is not followed", endpoint)
            raise GroupsUnavailable("Your group memberships could not be read. Please try again in a moment.")
    logger.warning("Group memberships run past %s pages of Microsoft Graph; refused", MAX_PAGES)
    raise GroupsUnavailable("Your group memberships could not be read. Please try again in a moment.")


def _page(response: requests.Response) -> dict[str, Any]:
    """The page of directory objects ``response`` holds.

    :raises GroupsUnavailable: a failure, or an answer that is not such a page.
    """
    if response.status_code == 200:
        try:
            page = response.json()
        except ValueError:
            page = None
        if isinstance(page, dict) and isinstance(page.get("value"), list):
            return page
    logger.warning(
        "Microsoft Graph answered a read of group memberships with %s (%s)",
        response.status_code,
        response.headers.get("Content-Type", "no content type"),
    )
    raise GroupsUnavailable("Your group memberships could not be read. Please try again in a moment.")
