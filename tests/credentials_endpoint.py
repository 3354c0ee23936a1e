"""For the credential tests: App Service's managed-identity endpoint, emulated on 127.0.0.1,
and tokens of the federated issuers the local provider trusts (``localidp.federated_issuers``).

The endpoint answers as App Service's does when MSAL's managed-identity client calls it
(``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` set)::

    GET <url>?api-version=2019-08-01&resource=<resource>[&client_id=<user-assigned identity>]
    X-IDENTITY-HEADER: <header>
    -> {"access_token", "expires_on" (epoch seconds, a string), "resource", "token_type", "client_id"}

Its tokens are JWTs of :data:`localidp.MANAGED_IDENTITY_ISSUER`: ``sub`` and ``oid`` the
identity's principal id, ``aud`` the resource asked for, signed with that issuer's key.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
from localidp import (
    MANAGED_IDENTITY_ISSUER,
    SYSTEM_IDENTITY_PRINCIPAL_ID,
    TENANT_ID,
    USER_IDENTITY_CLIENT_ID,
    USER_IDENTITY_PRINCIPAL_ID,
    WORKLOAD_ISSUER,
    WORKLOAD_SUBJECT,
)

#: The audience a federated identity credential accepts.
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"

#: The client id MSAL's system-assigned requests carry none of; the endpoint's own name for it.
SYSTEM_IDENTITY_CLIENT_ID = "a1a1a1a1-0000-4000-8000-000000000001"


def federated_token(
    key_path: Path,
    kid: str,
    *,
    issuer: str,
    subject: str,
    audience: str = FEDERATION_AUDIENCE,
    lifetime: int = 3600,
    **claims: Any,
) -> str:
    """A JWT of ``issuer`` for ``subject``, signed RS256 with the key in ``key_path``."""
    now = int(time.time())
    payload = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key_path.read_bytes(), algorithm="RS256", headers={"kid": kid})


def workload_token(key_path: Path, *, subject: str = WORKLOAD_SUBJECT, lifetime: int = 3600) -> str:
    """A Kubernetes service account token, as workload identity projects into ``AZURE_FEDERATED_TOKEN_FILE``."""
    return federated_token(key_path, "k8s-1", issuer=WORKLOAD_ISSUER, subject=subject, lifetime=lifetime)


class ManagedIdentityEndpoint:
    """App Service's managed-identity endpoint, for MSAL's ``ManagedIdentityClient``.

    :param key_path: the key of :data:`localidp.MANAGED_IDENTITY_ISSUER`.
    :param header: the ``IDENTITY_HEADER`` value it demands in ``X-IDENTITY-HEADER``.
    """

    def __init__(self, key_path: Path, *, header: str = "test-identity-header") -> None:
        self.key_path = key_path
        self.header = header
        #: Seconds each token lives.
        self.lifetime = 3600
        #: Seconds to wait before answering.
        self.delay = 0.0
        #: Answer this status with App Service's JSON error instead of a token (0: a token).
        self.status = 0
        #: Answer this body (an HTML page, say) with :attr:`status` or 502 instead of a token.
        self.body: str | None = None
        #: The user-assigned identities: client id -> principal id.
        self.user_assigned = {USER_IDENTITY_CLIENT_ID: USER_IDENTITY_PRINCIPAL_ID}
        #: Every request: its query, and when it came.
        self.calls: list[dict[str, Any]] = []
        #: Every token given: ``(issued at, exp, token)``.
        self.issued: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                endpoint._answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """What ``IDENTITY_ENDPOINT`` holds."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def __enter__(self) -> ManagedIdentityEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _send(self, request: BaseHTTPRequestHandler, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _error(self, request: BaseHTTPRequestHandler, status: int, message: str) -> None:
        self._send(request, status, json.dumps({"statusCode": status, "message": message}), "application/json")

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = dict(parse_qsl(parts.query))
        with self._lock:
            self.calls.append({"at": time.time(), **query})
        if self.delay:
            time.sleep(self.delay)
        if parts.path != "/msi/token":
            return self._error(request, 404, "not found")
        if self.body is not None:
            return self._send(request, self.status or 502, self.body, "text/html")
        if self.status:
            return self._error(request, self.status, "injected failure")
        if request.headers.get("X-IDENTITY-HEADER") != self.header:
            return self._error(request, 401, "X-IDENTITY-HEADER is missing or wrong")
        if query.get("api-version") != "2019-08-01" or not query.get("resource"):
            return self._error(request, 400, "api-version=2019-08-01 and resource are required")
        client_id = query.get("client_id")
        if client_id is None:
            principal, client_id = SYSTEM_IDENTITY_PRINCIPAL_ID, SYSTEM_IDENTITY_CLIENT_ID
        elif client_id in self.user_assigned:
            principal = self.user_assigned[client_id]
        else:
            return self._error(request, 400, f"No managed identity found for client_id {client_id}")
        token = federated_token(
            self.key_path,
            "mi-1",
            issuer=MANAGED_IDENTITY_ISSUER,
            subject=principal,
            audience=query["resource"],
            lifetime=self.lifetime,
            oid=principal,
            azp=client_id,
            tid=TENANT_ID,
            idtyp="app",
        )
        expires_on = int(time.time()) + self.lifetime
        with self._lock:
            self.issued.append((time.time(), expires_on, token))
        answer = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": query["resource"],
            "token_type": "Bearer",
            "client_id": client_id,
        }
        return self._send(request, 200, json.dumps(answer), "application/json")
