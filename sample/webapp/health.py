"""The health-check path App Service pings on every instance (``/health``).

It answers in front of Flask, as WSGI middleware, so that it is as cheap as a
request can be and touches nothing that may be down or slow: no session (Flask
opens one for every request it routes, and a request carrying a session cookie
would read the store), no identity provider, no host check. The answer is the
same for every caller and names nothing, so it needs none of them: a 200 says the
process serves requests. An outage of Redis or of the provider shows on the
pages (503), not here, because restarting the instance would not fix either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HEALTH_PATH", "HealthCheck"]

#: The path; ``infra/modules/web.bicep`` sets the same one as the health-check path.
HEALTH_PATH = "/health"
_BODY = b"ok\n"


class HealthCheck:
    """Answer ``GET``/``HEAD`` on ``path`` with ``200 ok``; pass every other request to ``app``.

    :param app: the WSGI app to wrap (the Flask app's ``wsgi_app``).
    :param path: the health-check path.
    """

    def __init__(self, app: WSGIApplication, path: str = HEALTH_PATH) -> None:
        self.app = app
        self.path = path

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(_BODY))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [_BODY]
