"""Which return addresses are safe to follow after sign-in."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request


def safe_next(target: str | None, default: str = "/") -> str:
    """Return ``target`` if it is a relative path on this site, else ``default``.

    Only paths that start with a single ``/`` are kept; scheme-relative
    (``//host``), absolute (``https://host``), backslash (``/\\host``) and
    ``javascript:`` targets, and anything with control characters, fall back.
    """
    if not target or len(target) > 2048:
        return default
    if any(ord(c) < 32 or ord(c) == 127 for c in target) or "\\" in target:
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def current_path() -> str:
    """The path and query of the current request, for coming back to it."""
    path = request.script_root + request.path
    query = request.query_string.decode("latin-1")
    return f"{path}?{query}" if query else path
