"""Start, drive and stop the local OpenID Connect provider (``idp.mjs``).

Used by the test suite's fixtures, the benchmarks and the demo command::

    provider = LocalProvider(workdir, redirect_uris=[...], post_logout_redirect_uris=[...])
    provider.start()          # TLS on 127.0.0.1, a fresh CA in workdir
    ...
    provider.stop()

One walk signs a browser in, whichever kind plays it (a ``requests`` session
for an app on a port, Flask's test client for an app in-process)::

    answer = provider.sign_in_to_app(client, "/profile", login="alice")
    assert answer.status_code == 302

or in steps: :meth:`~LocalProvider.auth_uri_from` (the app's redirects up to the
provider), :meth:`~LocalProvider.sign_in` (the user on the provider's pages) and
:meth:`~LocalProvider.back_to_app` (the callback).

With ``browser_port`` it also serves the pages a browser visits over plain http
(:attr:`LocalProvider.browser_origin`), so a real browser reaches them without
trusting the throw-away CA; metadata and tokens stay on https.

It also plays Entra for web APIs: the APIs below (:data:`API_CLIENT_ID`...) get
Entra-shaped JWT access tokens from a sign-in (:meth:`LocalProvider.user_token`),
from client credentials (:meth:`LocalProvider.app_token`) and on-behalf-of; its
signing key can be rotated (:meth:`LocalProvider.rotate_keys`) and any token can
be signed with it (:meth:`LocalProvider.mint`)::

    token = provider.user_token("alice", [f"api://{API_CLIENT_ID}/Secret"])
    daemon = provider.app_token(DAEMON_CLIENT_ID, DAEMON_SECRET, f"api://{API_CLIENT_ID}/.default")
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import requests

if TYPE_CHECKING:
    import msal
    from werkzeug.test import Client

#: The browser's side of an app: a ``requests`` session for an app on a port, or
#: Flask's (werkzeug's) test client for an app in-process.
AppBrowser: TypeAlias = "requests.Session | Client"

HERE = Path(__file__).resolve().parent

TENANT_ID = "11111111-2222-3333-4444-555555555555"
B2C_TENANT = "contoso"
B2C_SIGN_IN = "B2C_1_signupsignin"
B2C_EDIT_PROFILE = "B2C_1_editprofile"
B2C_RESET_PASSWORD = "B2C_1_reset"
EXTERNAL_ID_TENANT = "contosoext.onmicrosoft.com"
CLIENT_ID = "local-client"
CLIENT_SECRET = "local-client-secret-0123456789"
#: A client whose access tokens live 5 seconds: MSAL refreshes them on every use.
SHORT_CLIENT_ID = "short-lived-client"
#: A client whose access tokens live 400 seconds: 100 seconds before MSAL's
#: 5-minute expiry margin makes it refresh them.
MEDIUM_CLIENT_ID = "medium-lived-client"
MEDIUM_TOKEN_SECONDS = 400
#: A client for which the provider drops ``max_age`` from sign-ins, as a provider that
#: ignores it would: its id tokens never carry ``auth_time``.
IGNORES_MAX_AGE_CLIENT_ID = "ignores-max-age-client"

# Web APIs, as app registrations exposing scopes. Their access tokens are JWTs as Entra's.
#: An API taking v2 tokens (aud: its client id), scopes Secret and Todo.Read.
API_CLIENT_ID = "bbbbbbbb-0000-4000-8000-000000000002"
API_SCOPES = ["Secret", "Todo.Read"]
#: An API taking v1 tokens (aud: api://<id>, iss: sts.windows.net), scope Secret.
API_V1_CLIENT_ID = "bbbbbbbb-0000-4000-8000-000000000003"
#: An API that calls another on behalf of its caller (scope access_as_user); also a
#: confidential client, for on-behalf-of and client credentials.
MIDDLE_API_CLIENT_ID = "cccccccc-0000-4000-8000-000000000004"
MIDDLE_API_SECRET = "middle-api-secret-0123456789"
MIDDLE_API_SERVICE_PRINCIPAL_ID = "cccccccc-5555-4000-8000-000000000004"
#: The API the middle one calls, scope Data.Read.
DOWNSTREAM_API_CLIENT_ID = "dddddddd-0000-4000-8000-000000000005"
#: A daemon (client credentials only) with the app role Jobs.Run on API_CLIENT_ID.
DAEMON_CLIENT_ID = "eeeeeeee-0000-4000-8000-000000000006"
DAEMON_SECRET = "daemon-secret-0123456789"
DAEMON_SERVICE_PRINCIPAL_ID = "eeeeeeee-5555-4000-8000-000000000006"
DAEMON_APP_ROLES = {API_CLIENT_ID: ["Jobs.Run"]}
#: A daemon with no app role anywhere.
DAEMON_NO_ROLES_CLIENT_ID = "ffffffff-0000-4000-8000-000000000007"
DAEMON_NO_ROLES_SECRET = "daemon-no-roles-secret-0123456789"
DAEMON_NO_ROLES_SERVICE_PRINCIPAL_ID = "ffffffff-5555-4000-8000-000000000007"
#: Microsoft Graph's client id; the local Graph (graph.mjs) serves group memberships at
#: :attr:`LocalProvider.graph_endpoint` ``/v1.0/me/transitiveMemberOf``, in pages of at most
#: GRAPH_PAGE_SIZE objects. A login ``groups-<N>`` is a member of the groups :func:`group_id` 0..N-1.
GRAPH_CLIENT_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_PAGE_SIZE = 100
#: Entra names at most this many groups in a token; beyond, it sends the overage marker.
GROUPS_IN_TOKEN = 200

# ---- Client credentials other than secrets (idp.mjs: "Client credentials") ----
# The keys and the certificate are made at start, in :attr:`LocalProvider.credentials_dir`.
#: A client that authenticates with its certificate (private_key_jwt): :attr:`LocalProvider.client_certificate`.
CERTIFICATE_CLIENT_ID = "certificate-client"
#: A client that trusts the same certificate by subject name and issuer: assertions must carry it (x5c).
X5C_CLIENT_ID = "x5c-client"
#: A client with federated identity credentials: the managed identities below and a Kubernetes service account.
FEDERATED_CLIENT_ID = "federated-client"
#: The issuer of managed-identity tokens (the tests' emulated App Service endpoint signs them with
#: :attr:`LocalProvider.managed_identity_issuer_key`).
MANAGED_IDENTITY_ISSUER = f"https://managed-identity.localhost/{TENANT_ID}/v2.0"
#: The system-assigned managed identity: its object (principal) id is the ``sub`` of its tokens.
SYSTEM_IDENTITY_PRINCIPAL_ID = "a1a1a1a1-5555-4000-8000-000000000001"
#: A user-assigned managed identity: chosen by its client id, named in tokens by its principal id.
USER_IDENTITY_CLIENT_ID = "a2a2a2a2-0000-4000-8000-000000000002"
USER_IDENTITY_PRINCIPAL_ID = "a2a2a2a2-5555-4000-8000-000000000002"
#: A Kubernetes cluster's service account issuer (workload identity), signing with
#: :attr:`LocalProvider.workload_issuer_key`, and the service account it trusts.
WORKLOAD_ISSUER = "https://kubernetes.localhost/cluster-1"
WORKLOAD_SUBJECT = "system:serviceaccount:web:identity-flask"


def self_signed(key: Any, common_name: str, *, days: float = 365, starts_in: float = -1) -> Any:
    """A self-signed X.509 certificate of ``key`` (a ``cryptography`` private key) named
    ``common_name``, valid from ``starts_in`` days from now until ``days`` from now."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=starts_in))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def group_id(index: int) -> str:
    """The object id of the local Graph's group ``index`` (as graph.mjs derives it)."""
    digest = hashlib.sha256(f"group-{index}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


#: The issuer of v1 access tokens; v2 ones have :attr:`LocalProvider.oidc_authority`.
V1_ISSUER = f"https://sts.windows.net/{TENANT_ID}/"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    *,
    timeout: float,
    detail: Callable[[], str] | None = None,
) -> None:
    """Wait until ``ready()`` says the server ``process`` started answers.

    ``ready`` may raise :class:`OSError` (``requests``' errors are ones) while the
    server is still coming up.

    :param detail: what to add to the error when the process exits, e.g. its log.
    :raises RuntimeError: the process exited, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            extra = f": {detail()}" if detail is not None else ""
            raise RuntimeError(f"{what} exited with {process.returncode}{extra}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start in time")


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Ask ``process`` to stop, and kill it if it has not within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def system_ca_bundle() -> str:
    """The CA bundle requests would use without our test CA."""
    for candidate in (os.environ.get("REQUESTS_CA_BUNDLE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and os.path.exists(candidate) and "identity-idp" not in candidate:
            return candidate
    import certifi

    return str(certifi.where())


class LocalProvider:
    """One ``node idp.mjs`` process on 127.0.0.1 over TLS.

    :param workdir: where certificates, the config and the log are written.
    :param redirect_uris: the redirect URIs the clients may use.
    :param post_logout_redirect_uris: where sign-out may return to.
    :param port: a fixed port, or 0 for a free one.
    :param users: per-login claim overrides, e.g. ``{"alice": {"roles": ["Admin"]}}``.
    :param browser_port: also serve every route over plain http on this port (0
        for a free one), for the pages a browser visits; ``None``: https only.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        redirect_uris: Iterable[str],
        post_logout_redirect_uris: Iterable[str],
        port: int = 0,
        users: dict[str, dict[str, Any]] | None = None,
        browser_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        #: The https origin: the authorities, metadata and tokens.
        self.origin = f"https://127.0.0.1:{self.port}"
        self.browser_port = None if browser_port is None else browser_port or free_port()
        #: Where a browser is sent: the plain-http origin with ``browser_port``, else :attr:`origin`.
        self.browser_origin = self.origin if self.browser_port is None else f"http://127.0.0.1:{self.browser_port}"
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.users = users or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_path = self.workdir / "certs" / "ca.pem"
        #: System CAs plus this provider's CA; point REQUESTS_CA_BUNDLE at it.
        self.ca_bundle = self.workdir / "certs" / "identity-idp-bundle.pem"

    # URLs of each kind of authority this provider serves.
    @property
    def entra_authority(self) -> str:
        return f"{self.origin}/{TENANT_ID}"

    @property
    def oidc_authority(self) -> str:
        return f"{self.origin}/{TENANT_ID}/v2.0"

    @property
    def external_id_authority(self) -> str:
        return f"{self.origin}/{EXTERNAL_ID_TENANT}"

    @property
    def graph_endpoint(self) -> str:
        """The local Microsoft Graph: its API calls are below ``/v1.0``, its scopes ``<this>/User.Read``."""
        return f"{self.origin}/graph"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.origin}/{TENANT_ID}/openid/userinfo"

    @property
    def token_endpoint(self) -> str:
        return f"{self.entra_authority}/oauth2/v2.0/token"

    @property
    def jwks_uri(self) -> str:
        """Where the tenant's discovery document says its signing keys are."""
        return f"{self.entra_authority}/discovery/v2.0/keys"

    @property
    def organizations_authority(self) -> str:
        """Entra's multi-tenant authority: its discovery document has the issuer
        ``<origin>/{tenantid}/v2.0``, a template, and the tenant's ``jwks_uri``."""
        return f"{self.origin}/organizations"

    def browser_url(self, url: str) -> str:
        """``url`` moved from :attr:`origin` to :attr:`browser_origin`; any other URL as it is."""
        if url.startswith(self.origin + "/"):
            return self.browser_origin + url[len(self.origin) :]
        return url

    def _write_certs(self) -> None:
        import trustme

        certs = self.workdir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(self.ca_path))
        leaf.private_key_pem.write_to_path(str(certs / "server.key"))
        with open(certs / "server.pem", "wb") as out:
            for blob in leaf.cert_chain_pems:
                out.write(blob.bytes())
        with open(self.ca_bundle, "wb") as out:
            out.write(Path(system_ca_bundle()).read_bytes())
            out.write(b"\n")
            out.write(self.ca_path.read_bytes())

    # ---- Client credentials other than secrets (idp.mjs: "Client credentials") ----

    @property
    def credentials_dir(self) -> Path:
        """Where the client certificate and the federated issuers' keys are made at start."""
        return self.workdir / "credentials"

    @property
    def client_certificate(self) -> Path:
        """A PEM file with the private key and the certificate registered on
        :data:`CERTIFICATE_CLIENT_ID` and :data:`X5C_CLIENT_ID` (valid for a year)."""
        return self.credentials_dir / "client.pem"

    @property
    def managed_identity_issuer_key(self) -> Path:
        """The PEM private key that signs :data:`MANAGED_IDENTITY_ISSUER`'s tokens (key id ``mi-1``)."""
        return self.credentials_dir / "managed-identity-issuer.key"

    @property
    def workload_issuer_key(self) -> Path:
        """The PEM private key that signs :data:`WORKLOAD_ISSUER`'s tokens (key id ``k8s-1``)."""
        return self.credentials_dir / "workload-issuer.key"

    def credential_clients(self) -> list[dict[str, Any]]:
        """The clients that authenticate with a certificate or a federated credential."""
        client = {"redirect_uris": self.redirect_uris, "post_logout_redirect_uris": self.post_logout_redirect_uris}
        certificate = str(self.credentials_dir / "client-cert.pem")
        return [
            {"client_id": CERTIFICATE_CLIENT_ID, **client, "certificates": [certificate]},
            {"client_id": X5C_CLIENT_ID, **client, "certificates": [certificate], "require_x5c": True},
            {
                "client_id": FEDERATED_CLIENT_ID,
                **client,
                "federated_credentials": [
                    {"issuer": MANAGED_IDENTITY_ISSUER, "subject": SYSTEM_IDENTITY_PRINCIPAL_ID},
                    {"issuer": MANAGED_IDENTITY_ISSUER, "subject": USER_IDENTITY_PRINCIPAL_ID},
                    {"issuer": WORKLOAD_ISSUER, "subject": WORKLOAD_SUBJECT},
                ],
            },
        ]

    def federated_issuers(self) -> list[dict[str, Any]]:
        """The issuers federated credentials may name, with their public keys (JWKs)."""
        return [
            {"issuer": MANAGED_IDENTITY_ISSUER, "keys": [_public_jwk(self.managed_identity_issuer_key, "mi-1")]},
            {"issuer": WORKLOAD_ISSUER, "keys": [_public_jwk(self.workload_issuer_key, "k8s-1")]},
        ]

    def _write_credentials(self) -> None:
        """A client certificate and the federated issuers' keys, new for each start."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        def new_key(path: Path) -> rsa.RSAPrivateKey:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            path.write_bytes(pem)
            return key

        self.credentials_dir.mkdir(parents=True, exist_ok=True)
        new_key(self.managed_identity_issuer_key)
        new_key(self.workload_issuer_key)
        key = new_key(self.credentials_dir / "client.key")
        certificate = self_signed(key, "identity-flask-test-client")
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
        (self.credentials_dir / "client-cert.pem").write_bytes(certificate_pem)
        self.client_certificate.write_bytes((self.credentials_dir / "client.key").read_bytes() + certificate_pem)

    def clients(self) -> list[dict[str, Any]]:
        """The registered clients, as the provider's config has them."""
        client = {
            "client_secret": CLIENT_SECRET,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
        }
        return [
            {"client_id": CLIENT_ID, **client},
            {"client_id": SHORT_CLIENT_ID, **client, "access_token_ttl": 5},
            {"client_id": MEDIUM_CLIENT_ID, **client, "access_token_ttl": MEDIUM_TOKEN_SECONDS},
            {"client_id": IGNORES_MAX_AGE_CLIENT_ID, **client, "ignores_max_age": True},
            {
                "client_id": MIDDLE_API_CLIENT_ID,
                "client_secret": MIDDLE_API_SECRET,
                "service_principal_id": MIDDLE_API_SERVICE_PRINCIPAL_ID,
            },
            {
                "client_id": DAEMON_CLIENT_ID,
                "client_secret": DAEMON_SECRET,
                "service_principal_id": DAEMON_SERVICE_PRINCIPAL_ID,
                "app_roles": DAEMON_APP_ROLES,
            },
            {
                "client_id": DAEMON_NO_ROLES_CLIENT_ID,
                "client_secret": DAEMON_NO_ROLES_SECRET,
                "service_principal_id": DAEMON_NO_ROLES_SERVICE_PRINCIPAL_ID,
            },
            *self.credential_clients(),
        ]

    def config(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": {
                "cert": str(self.workdir / "certs" / "server.pem"),
                "key": str(self.workdir / "certs" / "server.key"),
            },
            "tenants": [
                f"/{TENANT_ID}",
                f"/{EXTERNAL_ID_TENANT}",
                f"/{B2C_TENANT}.onmicrosoft.com/{B2C_SIGN_IN}",
                f"/{B2C_TENANT}.onmicrosoft.com/{B2C_EDIT_PROFILE}",
                f"/{B2C_TENANT}.onmicrosoft.com/{B2C_RESET_PASSWORD}",
            ],
            "tid": TENANT_ID,
            "accessTokenTtl": 3600,
            "extraScopes": ["User.Read", "Files.Read", "api://local/access"],
            "clients": self.clients(),
            "apis": [
                {"client_id": API_CLIENT_ID, "scopes": API_SCOPES},
                {"client_id": API_V1_CLIENT_ID, "scopes": ["Secret"], "access_token_version": 1},
                {"client_id": MIDDLE_API_CLIENT_ID, "scopes": ["access_as_user"]},
                {"client_id": DOWNSTREAM_API_CLIENT_ID, "scopes": ["Data.Read"]},
                {
                    "client_id": GRAPH_CLIENT_ID,
                    "scopes": ["User.Read", "GroupMember.Read.All", "Mail.Read"],
                    "identifier_uri": self.graph_endpoint,
                },
            ],
            "graph": {"client_id": GRAPH_CLIENT_ID, "page_size": GRAPH_PAGE_SIZE},
            "federated_issuers": self.federated_issuers(),  # see credential_clients
            "users": self.users,
            **({"browserPort": self.browser_port} if self.browser_port is not None else {}),
        }

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until it answers."""
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"The local provider's packages are missing: run `npm ci --prefix {HERE}`.")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js 18.12+ is needed to run the local identity provider.")
        self._write_certs()
        self._write_credentials()
        config_path = self.workdir / "idp-config.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.workdir / "idp.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [node, str(HERE / "idp.mjs"), str(config_path)], cwd=HERE, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        origins = {self.origin, self.browser_origin}
        try:
            wait_until_ready(
                self.process,
                lambda: all(requests.get(f"{o}/__health", verify=str(self.ca_path), timeout=1).ok for o in origins),
                "The local provider",
                timeout=timeout,
                detail=(self.workdir / "idp.log").read_text,
            )
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process."""
        stop_process(self.process)
        self.process = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.origin + path, verify=str(self.ca_path), timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def log(self, *, clear: bool = False) -> list[dict[str, Any]]:
        """The requests the provider saw (and forget them, with ``clear``)."""
        result: list[dict[str, Any]] = self._call("POST" if clear else "GET", "/__log")
        return result

    def fault(
        self,
        path: str,
        *,
        status: int = 0,
        delay: int = 0,
        times: int = 1,
        body: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Make the next ``times`` requests whose path ends with ``path`` fail or stall.

        :param status: answer this status with a JSON error; 0 answers as usual.
        :param delay: wait this many milliseconds first.
        :param body: answer this body instead (with ``status``, else 200), as a
            provider behind a misbehaving proxy might: an HTML page, say.
        :param content_type: the body's content type; ``text/html`` unless told.
        """
        fault: dict[str, Any] = {"path": path, "status": status, "delay": delay, "times": times}
        if body is not None:
            fault["body"] = body
        if content_type is not None:
            fault["contentType"] = content_type
        self._call("POST", "/__fault", json=fault)

    def clear_faults(self) -> None:
        self._call("DELETE", "/__fault")

    # --- Entra's error answers, for the diagnosis tests ---------------------------------------------

    def authorize_error(self, error: str, description: str, *, times: int = 1) -> None:
        """Make the next ``times`` authorization requests send the browser back to the app with
        ``error`` and ``error_description`` (and the request's state), as Entra answers a sign-in
        it refuses, e.g. ``("invalid_request", "AADSTS50011: The redirect URI ...")``."""
        answer = {"error": error, "error_description": description}
        self._call("POST", "/__fault", json={"path": "/oauth2/v2.0/authorize", "redirectError": answer, "times": times})

    def token_error(self, error: str, description: str, *, status: int = 400, times: int = 1) -> None:
        """Make the next ``times`` token requests answer ``status`` with Entra's JSON error body,
        e.g. ``("invalid_client", "AADSTS7000215: Invalid client secret provided. ...", status=401)``."""
        codes = [int(code) for code in re.findall(r"AADSTS(\d+)", description)]
        body = json.dumps({"error": error, "error_description": description, "error_codes": codes})
        self.fault("/oauth2/v2.0/token", status=status, body=body, content_type="application/json", times=times)

    def revoke_refresh_tokens(self) -> int:
        """Drop every refresh token, as if they had expired."""
        return int(self._call("POST", "/__revoke")["dropped"])

    def http(self) -> requests.Session:
        """A session for the provider's back channel that trusts :attr:`ca_bundle`
        whatever ``REQUESTS_CA_BUNDLE`` says."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_bundle)
        return session

    def rotate_keys(self) -> str:
        """Add a signing key that signs every token from now on; the older keys stay
        published at :attr:`jwks_uri`. Returns the new key's ``kid``."""
        return str(self._call("POST", "/__keys/rotate")["kid"])

    def jwks(self) -> dict[str, Any]:
        """The published signing keys (:attr:`jwks_uri`)."""
        with self.http() as http:
            response = http.get(self.jwks_uri, timeout=10)
        response.raise_for_status()
        keys: dict[str, Any] = response.json()
        return keys

    def key_ids(self) -> list[str]:
        """The ``kid`` of every published signing key, the one signing now first. Asked of
        a test hook, so it is not in :meth:`log` as a fetch of :attr:`jwks_uri` would be."""
        return [str(kid) for kid in self._call("GET", "/__keys/rotate")["kids"]]

    def mint(self, claims: dict[str, Any], *, header: dict[str, Any] | None = None, kid: str | None = None) -> str:
        """A JWT with ``claims`` signed RS256 by the provider's current key (or key ``kid``),
        for claims a real provider would never give (expired, another audience...).

        :param header: merged over ``{"alg": "RS256", "typ": "JWT", "kid": ...}``; the
            signature stays RS256 by the provider's key whatever it says.
        """
        body: dict[str, Any] = {"claims": claims}
        if header is not None:
            body["header"] = header
        if kid is not None:
            body["kid"] = kid
        return str(self._call("POST", "/__mint", json=body)["token"])

    def app_token(self, client_id: str, secret: str, scope: str) -> dict[str, Any]:
        """Client credentials by a plain POST to the token endpoint: the provider's JSON
        answer, an error one included (``scope`` is e.g. ``api://<api>/.default``)."""
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope}
        with self.http() as http:
            answer: dict[str, Any] = http.post(self.token_endpoint, data=data, timeout=10).json()
        return answer

    def msal_app(
        self,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        *,
        token_cache: msal.TokenCache | None = None,
    ) -> msal.ConfidentialClientApplication:
        """MSAL's confidential client for ``client_id`` at :attr:`entra_authority`, trusting
        :attr:`ca_bundle`."""
        import msal

        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret,
            authority=self.entra_authority,
            instance_discovery=False,
            http_client=self.http(),
            token_cache=token_cache,
        )

    def sign_in_with_msal(
        self,
        app: msal.ConfidentialClientApplication,
        login: str,
        scopes: Iterable[str],
        *,
        browser: requests.Session | None = None,
    ) -> dict[str, Any]:
        """A user's sign-in to ``app`` by MSAL's auth code flow, without a browser: the flow
        starts with the client's first registered redirect URI (``form_post``), :meth:`sign_in`
        plays the user, and the code is redeemed. Returns MSAL's result (with an ``error`` if the
        provider refused).

        :param browser: the user's session with this provider, for single sign-on.
        """
        client = next((c for c in self.clients() if c["client_id"] == app.client_id), None)
        if client is None or not client.get("redirect_uris"):
            raise ValueError(f"{app.client_id} has no redirect URI: users cannot sign in to it")
        # form_post, which MSAL asks for; sign_in() gives the posted fields as a query.
        flow = app.initiate_auth_code_flow(
            list(scopes), redirect_uri=client["redirect_uris"][0], response_mode="form_post"
        )
        callback = self.sign_in(flow["auth_uri"], login=login, browser=browser)
        result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, query_of(callback))
        return result

    def user_token(
        self,
        login: str,
        scopes: Iterable[str],
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
    ) -> str:
        """The access token a user signed in to ``client_id`` gets for ``scopes`` (e.g.
        ``[f"api://{API_CLIENT_ID}/Secret"]``), by a real auth code flow (:meth:`sign_in_with_msal`).

        :raises RuntimeError: the provider gave no access token.
        """
        result = self.sign_in_with_msal(self.msal_app(client_id, client_secret), login, scopes)
        if "access_token" not in result:
            raise RuntimeError(f"No access token for {login}: {result.get('error')} {result.get('error_description')}")
        return str(result["access_token"])

    def browser(self) -> requests.Session:
        """A session playing the user's browser at this provider: its own cookies, and
        trust in this provider's CA whatever ``REQUESTS_CA_BUNDLE`` says."""
        browser = requests.Session()
        browser.trust_env = False
        browser.verify = str(self.ca_path)
        return browser

    def sign_in(
        self,
        auth_uri: str,
        *,
        login: str = "alice",
        password: str = "any-password",
        browser: requests.Session | None = None,
        action: str = "login",
    ) -> str:
        """Play the user on the provider's pages, without a browser.

        :param action: ``login``; ``cancel`` (the user cancels) or ``forgot``
            (B2C's "Forgot your password?").
        :param browser: a session holding the provider's cookies, for single sign-on.
        :return: the URL the provider sends the browser back to, with its query;
            for ``form_post``, that URL with the posted fields as its query.
        """
        http = browser or self.browser()
        http.verify = str(self.ca_path)  # also for a session the caller made
        # The provider's pages: on its https origin, or on the http one auth_uri names.
        provider_origins = {self.origin, self.browser_origin, origin_of(auth_uri)}
        response = http.get(auth_uri, allow_redirects=False, timeout=10)
        for _ in range(12):
            if response.is_redirect:
                url = urljoin(response.url, response.headers["Location"])
                if origin_of(url) not in provider_origins:
                    return url
                response = http.get(url, allow_redirects=False, timeout=10)
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"', response.text)
            if form is None:
                raise RuntimeError(f"Unexpected provider page: {response.status_code} {response.text[:300]}")
            target = urljoin(response.url, html.unescape(form.group(1)))
            if origin_of(target) not in provider_origins:  # form_post: the page posts to the app
                fields = re.findall(r'name="([^"]+)" value="([^"]*)"', response.text)
                query = "&".join(f"{k}={quote(html.unescape(v), safe='')}" for k, v in fields)
                return f"{target}?{query}"
            if action == "cancel":
                abort = re.search(r'href="([^"]*abort[^"]*)"', response.text)
                assert abort is not None, "no cancel link on the login page"
                response = http.get(urljoin(response.url, html.unescape(abort.group(1))), allow_redirects=False)
                continue
            if action == "forgot":
                forgot = re.search(r'href="([^"]*/forgot)"', response.text)
                assert forgot is not None, "no forgot-password link on the login page"
                response = http.get(urljoin(response.url, html.unescape(forgot.group(1))), allow_redirects=False)
                continue
            hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            if "op.logoutForm" in response.text:  # the provider's sign-out confirmation
                data = {**hidden, "logout": "yes"}
            else:
                data = {**hidden, "prompt": "login", "login": login, "password": password}
            response = http.post(target, data=data, allow_redirects=False, timeout=10)
        raise RuntimeError("The provider never sent the browser back to the app.")

    def auth_uri_from(
        self,
        app_browser: AppBrowser,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> str:
        """Ask an app for ``url`` as a signed-out browser and follow the app's redirects
        until one leads to this provider.

        :param app_browser: the browser's side of the app: a :class:`requests.Session`
            for an app on a port, or Flask's test client for one in-process.
        :param url: where the browser starts; a bare path for a test client.
        :param headers: sent with every request to the app.
        :return: the provider URL the app sends the browser to, its authorization request.
        :raises RuntimeError: the app answered without a redirect.
        """
        provider_origins = {self.origin, self.browser_origin}
        app_origin = origin_of(url) if urlsplit(url).netloc else None
        current = url
        for _ in range(10):
            response = _get(app_browser, current, headers=headers, timeout=timeout)
            location = response.headers.get("Location") if response.status_code in REDIRECTS else None
            if not location:
                body = response.text[:300]
                raise RuntimeError(f"{current} did not lead to the provider: {response.status_code} {body}")
            current = urljoin(current, location)
            # The first redirect away from the app leads to the provider, on its https origin
            # or on a plain-http one for browsers (which a provider started elsewhere may have).
            if origin_of(current) in provider_origins or app_origin not in (None, origin_of(current)):
                return current
        raise RuntimeError(f"{url} never led to the provider")

    def sign_in_from(
        self,
        app_browser: AppBrowser,
        url: str,
        *,
        login: str = "alice",
        password: str = "any-password",
        browser: requests.Session | None = None,
        action: str = "login",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> str:
        """Follow the app's redirects from ``url`` to this provider (:meth:`auth_uri_from`)
        and play the user there (:meth:`sign_in`).

        :param browser: the browser's session with this provider, for single sign-on.
        :return: the URL the provider sends the browser back to (the app's callback).
        """
        auth_uri = self.auth_uri_from(app_browser, url, headers=headers, timeout=timeout)
        return self.sign_in(auth_uri, login=login, password=password, browser=browser, action=action)

    def back_to_app(
        self, app_browser: AppBrowser, callback: str, *, form_post: bool = False, timeout: float = 30
    ) -> Any:
        """Bring the browser back to the app with the provider's answer, as :meth:`sign_in`
        returned it: a GET of the callback URL or, for ``form_post``, a POST of its fields.

        A test client asks for the callback's path on its own origin, whatever the
        redirect URI's host is.

        :return: the app's answer, its redirect not followed.
        """
        own = isinstance(app_browser, requests.Session)
        target = callback if own else path_and_query(callback)
        options: dict[str, Any] = {"allow_redirects": False, "timeout": timeout} if own else {}
        if form_post:
            return app_browser.post(target.split("?", 1)[0], data=query_of(callback), **options)
        return app_browser.get(target, **options)

    def sign_in_to_app(
        self,
        app_browser: AppBrowser,
        url: str,
        *,
        login: str = "alice",
        password: str = "any-password",
        browser: requests.Session | None = None,
        action: str = "login",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Any:
        """The whole walk: ask the app for ``url``, follow it to this provider, play the
        user there (see :meth:`sign_in`), and come back to the app's callback.

        :return: the app's answer to its callback (a redirect to ``url`` when all went well).
        """
        auth_uri = self.auth_uri_from(app_browser, url, headers=headers, timeout=timeout)
        callback = self.sign_in(auth_uri, login=login, password=password, browser=browser, action=action)
        form_post = query_of(auth_uri).get("response_mode") == "form_post"
        return self.back_to_app(app_browser, callback, form_post=form_post, timeout=timeout)

    # ---- Sign-out and front-channel logout (idp.mjs: frontchannelPage) ----

    def register_frontchannel(self, client_id: str, uris: Iterable[str]) -> None:
        """Make ``uris`` the front-channel logout URLs of ``client_id`` (until :meth:`clear_frontchannel`)."""
        self._call("POST", "/__frontchannel?register", json={"client_id": client_id, "uris": list(uris)})

    def clear_frontchannel(self) -> None:
        """Forget every front-channel logout URL registered by :meth:`register_frontchannel`, and the log."""
        self._call("DELETE", "/__frontchannel")

    def frontchannel_loaded(self, *, clear: bool = False) -> list[str]:
        """The front-channel logout URLs the provider's sign-out pages loaded so far."""
        return [str(entry["url"]) for entry in self._call("POST" if clear else "GET", "/__frontchannel")]

    def sign_out(self, end_session_url: str, *, browser: requests.Session) -> SignOut:
        """Play the user's browser at the end-session endpoint, as the app sent it there.

        :param browser: the browser's session with this provider (the one it signed in with).
        :return: the front-channel logout URLs the answer page loads in its iframes (what a
            browser would request, without the app's cookie), and where it then goes.
        """
        http = browser
        http.verify = str(self.ca_path)
        response = http.get(end_session_url, allow_redirects=False, timeout=10)
        if "op.logoutForm" in response.text:  # the provider's (automatic) sign-out confirmation
            form = re.search(r'<form id="op.logoutForm" method="post" action="([^"]+)"', response.text)
            assert form is not None, "no sign-out form on the provider's page"
            hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            target = urljoin(response.url, html.unescape(form.group(1)))
            response = http.post(target, data={**hidden, "logout": "yes"}, allow_redirects=False, timeout=10)
        if response.is_redirect:
            return SignOut([], urljoin(response.url, response.headers["Location"]))
        frames = re.findall(r'<iframe class="frontchannel" src="([^"]+)"', response.text)
        frames = [html.unescape(src) for src in frames]
        following = re.search(r'<a id="continue" href="([^"]+)"', response.text)
        if following is None:
            raise RuntimeError(f"Unexpected sign-out page: {response.status_code} {response.text[:300]}")
        return SignOut(frames, html.unescape(following.group(1)))


class SignOut(NamedTuple):
    """What the provider's end-session endpoint did (:meth:`LocalProvider.sign_out`)."""

    #: The front-channel logout URLs loaded in hidden iframes, with ``iss`` and ``sid``.
    frontchannel: list[str]
    #: Where the browser goes next (the app's post-logout redirect URI).
    return_to: str


#: Statuses of a redirect a browser follows.
REDIRECTS = (301, 302, 303, 307, 308)


def _get(app_browser: AppBrowser, url: str, *, headers: dict[str, str] | None, timeout: float) -> Any:
    """GET ``url`` as ``app_browser``, without following a redirect."""
    if isinstance(app_browser, requests.Session):
        return app_browser.get(url, headers=headers, allow_redirects=False, timeout=timeout)
    return app_browser.get(url, headers=headers)  # a test client follows nothing unless told


def _public_jwk(key_path: Path, kid: str) -> dict[str, str]:
    """The public JWK (RS256) of the RSA private key in ``key_path``."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.public_key().public_numbers()

    def b64(number: int) -> str:
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e), "kid": kid, "alg": "RS256", "use": "sig"}


def query_of(url: str) -> dict[str, str]:
    """The query arguments of ``url``."""
    return dict(parse_qsl(urlsplit(url).query))


def path_and_query(url: str) -> str:
    """``url`` without scheme and host, for Flask's test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
