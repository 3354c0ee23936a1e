"""What both benchmarks measure with: one WSGI request, CPU time per request, and the
median of per-round figures with its confidence interval."""

from __future__ import annotations

import base64
import io
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WSGI = Callable[..., Any]


def request_once(app: WSGI, environ: dict[str, Any]) -> tuple[str, bytes]:
    """One request through ``app`` (a WSGI callable); its status line and body."""
    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(b"")
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        status.append(line)
        return _discard

    body = app(env, start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0], data


def _discard(data: bytes) -> None:
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Samples:
    """Per-round (or per-batch) figures of one cell."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def min(self) -> float:
        return min(self.values) if self.values else math.nan

    def half_width(self) -> float:
        """Half the width of a distribution-free 95% confidence interval of the median."""
        ordered = sorted(self.values)
        n = len(ordered)
        if n < 6:
            return (ordered[-1] - ordered[0]) / 2 if n > 1 else math.inf
        reach = math.ceil(0.98 * math.sqrt(n))
        low = ordered[max(0, n // 2 - reach)]
        high = ordered[min(n - 1, (n - 1) // 2 + reach)]
        return (high - low) / 2
