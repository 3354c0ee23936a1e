"""Content negotiation: whether a request is a page load or an API call.

The answer decides how a refused or failed request is told: a browser gets a
redirect to sign in or an HTML error page; an API or XHR caller gets 401 with
JSON.
"""

from __future__ import annotations

from flask import request


def wants_html() -> bool:
    """Whether the current request is a page load rather than an API or XHR call."""
    if request.headers.get("X-Requested-With") == "XMLHttpRequest":
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode and mode not in ("navigate", "nested-navigate"):
        return False
    accept = request.accept_mimetypes
    if not accept:  # no Accept header: anything will do, as for a plain link
        return True
    return accept.best_match(["text/html", "application/json"]) == "text/html"
