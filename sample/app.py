"""The entry point: ``gunicorn app:app``, ``flask run`` and App Service all find ``app`` here.

The app is built on first use of ``app`` rather than at import, so importing
this module never fails for want of settings; a missing setting is reported
when the server loads the app, with the name of the variable to set.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from webapp import create_app

__all__ = ["app", "create_app"]

#: The app, built by the module's ``__getattr__`` on first access.
app: Flask
_app: Flask | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
