"""gunicorn's settings for the sample, read from this folder by ``gunicorn app:app``.

The to-do page calls the app's own web API over HTTP while it serves the page.
With one request at a time per worker (gunicorn's default), pages waiting on
that call can hold every worker, and their calls then wait until they time
out. Threads let a worker answer the call while a page waits for it.

``GUNICORN_WORKERS`` sets the number of worker processes. On App Service the
deployment (``infra/modules/web.bicep``) sets it from the plan's size: two per
core, plus one. Unset, gunicorn's default (one) applies. Options given on the
command line win over these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: More would be a typo: the largest App Service plans have 32 cores.
MAX_WORKERS = 65


def worker_count(environ: Mapping[str, str]) -> int | None:
    """The worker count ``GUNICORN_WORKERS`` asks for, or ``None`` when it is unset.

    :raises ValueError: not a whole number from 1 to :data:`MAX_WORKERS`; the
        message names the variable.
    """
    text = environ.get("GUNICORN_WORKERS", "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"GUNICORN_WORKERS must be a whole number from 1 to {MAX_WORKERS}, got {text[:20]!r}.")
    return int(text)


threads = 4
_workers = worker_count(os.environ)
if _workers is not None:
    workers = _workers
