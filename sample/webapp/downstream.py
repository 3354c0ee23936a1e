"""Calling the downstream API with the signed-in user's access token."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import requests

logger = logging.getLogger(__name__)

#: One connection pool per process, reused by every request.
_http = requests.Session()


@dataclasses.dataclass(frozen=True)
class ApiResult:
    """What the API answered, ready for a page."""

    #: The HTTP status, or ``None`` when the API could not be reached.
    status: int | None
    #: The body: parsed JSON, or text.
    body: Any
    #: Whether the body is JSON.
    is_json: bool

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def pretty(self) -> str:
        """The body for display; JSON is indented."""
        return json.dumps(self.body, indent=2, sort_keys=True) if self.is_json else str(self.body)


def call(endpoint: str, access_token: str, *, timeout: float = 10.0) -> ApiResult:
    """``GET endpoint`` with ``Authorization: Bearer <access_token>``."""
    try:
        response = _http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=timeout)
    except requests.RequestException as exc:
        logger.warning("API %s unreachable: %s", endpoint, type(exc).__name__)
        return ApiResult(None, f"The API could not be reached ({type(exc).__name__}).", False)
    if not response.ok:
        logger.info("API %s answered %s", endpoint, response.status_code)
    try:
        return ApiResult(response.status_code, response.json(), True)
    except ValueError:
        return ApiResult(response.status_code, response.text[:4000], False)
