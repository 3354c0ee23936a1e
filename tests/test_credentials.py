"""Client credentials, each kind end to end against the local provider: a secret, a certificate
(PEM or PFX, with or without passphrase, with x5c), a managed identity (system- and
user-assigned, through an emulated App Service endpoint and a federated identity credential),
and a client assertion callable (a Kubernetes token file). Each signs a user in and gets a token
for an API: the user's (``login_required(scopes=...)``) and the app's own (``get_app_token``).

Then what goes wrong: a key the provider does not know, a missing x5c, an endpoint that is down,
slow or confused, a callable that fails, every start-up error, and no secret in any log line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from conftest import SignIn, free_port
from credentials_endpoint import FEDERATION_AUDIENCE, ManagedIdentityEndpoint, workload_token
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask, jsonify
from localidp import (
    API_CLIENT_ID,
    CERTIFICATE_CLIENT_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    FEDERATED_CLIENT_ID,
    SYSTEM_IDENTITY_PRINCIPAL_ID,
    USER_IDENTITY_CLIENT_ID,
    USER_IDENTITY_PRINCIPAL_ID,
    X5C_CLIENT_ID,
    LocalProvider,
    self_signed,
)

from identity_flask import (
    ApiAuth,
    Auth,
    ConfigurationError,
    ProviderUnavailable,
    assertion_from_file,
    credential_summary,
)
from identity_flask.credentials import AssertionFile, Certificate, ClientAssertion, ManagedIdentity

API_SCOPE = f"api://{API_CLIENT_ID}/Secret"
API_DEFAULT = f"api://{API_CLIENT_ID}/.default"
PASSPHRASE = "pass-phrase-7Qz!x"
IDENTITY_HEADER = "identity-header-5f5f5f"


# -- the app and its tokens -------------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    """A token's claims (the provider signed it; the API tests check signatures)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def with_api_views(app: Flask) -> Flask:
    """Add a view with a user's token for the API, and one with the app's own token for it."""
    auth: Auth = app.extensions["test_auth"]

    @app.route("/api-token")
    @auth.login_required(scopes=[API_SCOPE])
    def api_token(*, context: dict[str, Any]) -> Any:
        return jsonify(claims_of(context["access_token"]))

    @app.route("/app-token")
    def app_token() -> Any:
        return jsonify(claims_of(auth.get_app_token([API_DEFAULT])["access_token"]))

    return app


@pytest.fixture
def credential_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app of ``client_id`` with the credential settings given (and no client secret)."""

    def build(client_id: str, **settings: Any) -> Flask:
        settings.setdefault("client_credential", None)
        return with_api_views(make_app(client_id=client_id, **settings))

    return build


def signs_in_and_gets_tokens(app: Flask, sign_in: SignIn, client_id: str, login: str = "alice") -> dict[str, Any]:
    """A user signs in to ``app`` for the API; the user's token and the app's are for the API,
    issued to ``client_id``. Returns both tokens' claims."""
    client = app.test_client()
    answer = sign_in(client, "/api-token", login=login)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/api-token")
    user = client.get("/api-token")
    assert user.status_code == 200, user.get_data(as_text=True)
    user_claims = user.get_json()
    assert user_claims["aud"] == API_CLIENT_ID
    assert user_claims["azp"] == client_id
    assert user_claims["sub"] == login
    assert user_claims["scp"] == "Secret"
    own = client.get("/app-token")
    assert own.status_code == 200, own.get_data(as_text=True)
    app_claims = own.get_json()
    assert app_claims["aud"] == API_CLIENT_ID
    assert app_claims["azp"] == client_id
    assert app_claims["idtyp"] == "app"
    return {"user": user_claims, "app": app_claims}


# -- certificate files, made at test time from the one the provider knows ------------------------------


def _key_and_certificate(path: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    data = path.read_bytes()
    key = serialization.load_pem_private_key(data, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE") :])


def new_certificate(key: Any = None, *, days: float = 365, starts_in: float = -1) -> tuple[Any, x509.Certificate]:
    """A self-signed certificate (of a new RSA key unless given), valid from ``starts_in`` days for ``days``."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, self_signed(key, "not-registered", days=days, starts_in=starts_in)


def pem_file(path: Path, key: Any, certificate: x509.Certificate | None, passphrase: str | None = None) -> Path:
    """A PEM file: the key (encrypted with ``passphrase``), then the certificate."""
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    data = b""
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    if certificate is not None:
        data += certificate.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(data)
    return path


def pfx_file(path: Path, key: Any, certificate: x509.Certificate | None, passphrase: str | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"client", key, certificate, None, encryption))
    return path


def key_lines(key: Any) -> list[str]:
    """Lines of the key's PEM body: none may appear in a message or a log line."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem.splitlines()[1:-1]


@pytest.fixture
def registered(provider: LocalProvider) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The key and certificate registered on the certificate clients."""
    return _key_and_certificate(provider.client_certificate)


# -- a secret: the baseline ------------------------------------------------------------------------------


def test_a_secret_signs_in_and_gets_tokens(credential_app: Callable[..., Flask], sign_in: SignIn) -> None:
    """The client secret, as before: the tokens say the app authenticated with a secret (azpacr 1)."""
    app = credential_app(CLIENT_ID, client_credential=CLIENT_SECRET)
    tokens = signs_in_and_gets_tokens(app, sign_in, CLIENT_ID)
    assert tokens["user"]["azpacr"] == tokens["app"]["azpacr"] == "1"
    assert credential_summary(app.extensions["identity"].settings.client_credential) == ("secret", None)


# -- certificates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "passphrase"),
    [("pem", None), ("pem", PASSPHRASE), ("pfx", None), ("pfx", PASSPHRASE)],
)
def test_a_certificate_file_signs_in_and_gets_tokens(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate],
    tmp_path: Path,
    form: str,
    passphrase: str | None,
) -> None:
    """A PEM or PFX file, its key encrypted or not: the provider takes the certificate's
    assertions (private_key_jwt, azpacr 2) for the sign-in, the user's API token and the app's."""
    key, certificate = registered
    write = pem_file if form == "pem" else pfx_file
    path = write(tmp_path / f"client.{form}", key, certificate, passphrase)
    app = credential_app(
        CERTIFICATE_CLIENT_ID, client_certificate_path=str(path), client_certificate_passphrase=passphrase
    )
    tokens = signs_in_and_gets_tokens(app, sign_in, CERTIFICATE_CLIENT_ID)
    assert tokens["user"]["azpacr"] == tokens["app"]["azpacr"] == "2"
    settings = app.extensions["identity"].settings
    assert settings.client_certificate_path == str(path)
    assert credential_summary(settings.client_credential) == ("certificate", certificate.not_valid_after_utc)


def test_the_thumbprints_are_computed_from_the_certificate(
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate], provider: LocalProvider
) -> None:
    _key, certificate = registered
    found = Certificate(provider.client_certificate)
    assert found.sha1_thumbprint == certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert found.sha256_thumbprint == certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert found.msal_credential()["thumbprint"] == found.sha1_thumbprint
    assert "PRIVATE" not in repr(found)


@pytest.mark.parametrize("form", ["pem", "pfx"])
def test_subject_name_and_issuer_auth_needs_x5c(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    form: str,
) -> None:
    """A registration that trusts the certificate by subject name and issuer wants it in each
    assertion: with send_x5c the sign-in and both tokens work; without, the provider refuses
    the same key (so the x5c really is sent, and really is checked)."""
    key, certificate = registered
    write = pem_file if form == "pem" else pfx_file
    path = write(tmp_path / f"client.{form}", key, certificate, PASSPHRASE)
    common = {"client_certificate_path": str(path), "client_certificate_passphrase": PASSPHRASE}
    app = credential_app(X5C_CLIENT_ID, client_certificate_send_x5c="true", **common)
    assert app.extensions["identity"].settings.client_certificate_send_x5c is True
    signs_in_and_gets_tokens(app, sign_in, X5C_CLIENT_ID)

    without = credential_app(X5C_CLIENT_ID, **common)
    answer = sign_in(without.test_client(), "/api-token")
    assert answer.status_code == 502
    assert "refused the code: invalid_client" in caplog.text
    assert without.test_client().get("/app-token", headers={"Accept": "application/json"}).status_code == 502


def test_the_provider_refuses_a_key_it_does_not_know(
    credential_app: Callable[..., Flask], sign_in: SignIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid certificate file that is not the registered one: the sign-in fails with a 502 page
    (the provider refused the app, not the user) and so does the app's token."""
    key, certificate = new_certificate()
    app = credential_app(
        CERTIFICATE_CLIENT_ID, client_certificate_path=str(pem_file(tmp_path / "x.pem", key, certificate))
    )
    answer = sign_in(app.test_client(), "/api-token")
    assert answer.status_code == 502
    assert "refused the code: invalid_client" in caplog.text
    page = answer.get_data(as_text=True)
    assert all(line not in page for line in key_lines(key))
    assert app.test_client().get("/app-token", headers={"Accept": "application/json"}).status_code == 502


def test_the_provider_checks_the_signature_not_only_the_thumbprint(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An attacker who knows the registered thumbprint (it is public) but not the key: refused."""
    _key, certificate = registered
    stranger, _ = new_certificate()
    forged = {
        "private_key": stranger.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "thumbprint": certificate.fingerprint(hashes.SHA1()).hex(),
    }
    app = credential_app(CERTIFICATE_CLIENT_ID, client_credential=forged)
    assert sign_in(app.test_client(), "/api-token").status_code == 502
    assert "refused the code: invalid_client" in caplog.text
    assert app.test_client().get("/app-token", headers={"Accept": "application/json"}).status_code == 502


def test_a_certificate_dict_as_msal_takes_it_still_works(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate],
) -> None:
    key, certificate = registered
    credential = {
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "thumbprint": certificate.fingerprint(hashes.SHA1()).hex(),
        "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }
    app = credential_app(CERTIFICATE_CLIENT_ID, client_credential=credential)
    tokens = signs_in_and_gets_tokens(app, sign_in, CERTIFICATE_CLIENT_ID)
    assert tokens["app"]["azpacr"] == "2"
    assert credential_summary(credential) == ("certificate", certificate.not_valid_after_utc)


def test_an_api_gets_app_tokens_with_a_certificate(provider: LocalProvider, tmp_path: Path) -> None:
    """ApiAuth takes the same settings: its app token (client credentials) with a PFX file."""
    key, certificate = _key_and_certificate(provider.client_certificate)
    path = pfx_file(tmp_path / "api.pfx", key, certificate, PASSPHRASE)
    api = ApiAuth(
        client_id=CERTIFICATE_CLIENT_ID,
        authority=provider.entra_authority,
        client_certificate_path=str(path),
        client_certificate_passphrase=PASSPHRASE,
    )
    claims = claims_of(api.get_app_token([API_DEFAULT])["access_token"])
    assert (claims["azp"], claims["azpacr"], claims["aud"]) == (CERTIFICATE_CLIENT_ID, "2", API_CLIENT_ID)


# -- managed identity -------------------------------------------------------------------------------------


@pytest.fixture
def endpoint(provider: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[ManagedIdentityEndpoint]:
    """App Service's managed-identity endpoint, found by MSAL through IDENTITY_ENDPOINT and IDENTITY_HEADER."""
    with ManagedIdentityEndpoint(provider.managed_identity_issuer_key, header=IDENTITY_HEADER) as running:
        monkeypatch.setenv("IDENTITY_ENDPOINT", running.url)
        monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        yield running


@pytest.mark.parametrize(
    ("identity", "principal", "asked_for"),
    [
        ("system", SYSTEM_IDENTITY_PRINCIPAL_ID, None),
        (USER_IDENTITY_CLIENT_ID, USER_IDENTITY_PRINCIPAL_ID, USER_IDENTITY_CLIENT_ID),
    ],
)
def test_a_managed_identity_signs_in_and_gets_tokens(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    endpoint: ManagedIdentityEndpoint,
    identity: str,
    principal: str,
    asked_for: str | None,
) -> None:
    """The managed identity's token for api://AzureADTokenExchange is the app's client
    assertion: the provider, trusting it as a federated credential, signs the user in and
    issues both tokens. The endpoint was asked for that resource, for the right identity, once."""
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity=identity)
    tokens = signs_in_and_gets_tokens(app, sign_in, FEDERATED_CLIENT_ID)
    assert tokens["user"]["azpacr"] == tokens["app"]["azpacr"] == "2"
    assert len(endpoint.calls) == 1
    call = endpoint.calls[0]
    assert (call["resource"], call.get("client_id")) == (FEDERATION_AUDIENCE, asked_for)
    assert claims_of(endpoint.issued[0][2])["sub"] == principal
    settings = app.extensions["identity"].settings
    assert settings.managed_identity == identity
    assert credential_summary(settings.client_credential) == ("managed_identity", None)


def test_an_api_gets_app_tokens_with_a_managed_identity(
    provider: LocalProvider, endpoint: ManagedIdentityEndpoint
) -> None:
    """ApiAuth from app.config (as App Service app settings arrive): the app token comes with
    the managed identity's assertion, and a second one from MSAL's cache without a new one."""
    app = Flask(__name__)
    app.config.update(
        IDENTITY_CLIENT_ID=FEDERATED_CLIENT_ID,
        IDENTITY_AUTHORITY=provider.entra_authority,
        IDENTITY_MANAGED_IDENTITY=USER_IDENTITY_CLIENT_ID,
    )
    api = ApiAuth(app)
    with app.app_context():
        first = api.get_app_token([API_DEFAULT])
        again = api.get_app_token([API_DEFAULT])
    claims = claims_of(first["access_token"])
    assert (claims["azp"], claims["azpacr"]) == (FEDERATED_CLIENT_ID, "2")
    assert again["access_token"] == first["access_token"]
    assert [call.get("client_id") for call in endpoint.calls] == [USER_IDENTITY_CLIENT_ID]


def test_another_identity_is_refused(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    endpoint: ManagedIdentityEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A managed identity the app registration does not trust (another subject): the provider refuses."""
    other = "a3a3a3a3-0000-4000-8000-000000000003"
    endpoint.user_assigned[other] = "a3a3a3a3-5555-4000-8000-000000000003"
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity=other)
    assert sign_in(app.test_client(), "/api-token").status_code == 502
    assert "refused the code: invalid_client" in caplog.text
    assert len(endpoint.calls) == 1


def test_the_assertion_is_kept_and_renewed_before_it_expires(
    credential_app: Callable[..., Flask], sign_in: SignIn, endpoint: ManagedIdentityEndpoint
) -> None:
    """Three sign-ins and an app token ask the endpoint once; when its token has less than
    five minutes left (here after 5 seconds) the next sign-in gets a new one, while the old
    one is still valid: the provider never sees an assertion about to expire."""
    endpoint.lifetime = 300 + 5
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity="system")
    for login in ("ann", "ben", "cat"):
        assert sign_in(app.test_client(), "/profile", login=login).status_code == 302
    assert app.test_client().get("/app-token").status_code == 200
    assert len(endpoint.calls) == 1
    time.sleep(5.5)
    assert sign_in(app.test_client(), "/profile", login="dan").status_code == 302
    assert len(endpoint.calls) == 2
    (_first_at, first_exp, first), (renewed_at, _exp, second) = endpoint.issued
    assert first != second
    assert first_exp - renewed_at > 290  # renewed with nearly five minutes to go


def test_concurrent_requests_ask_the_endpoint_once(
    credential_app: Callable[..., Flask], endpoint: ManagedIdentityEndpoint
) -> None:
    """Eight requests needing an assertion at the same moment, with none kept yet: one asks."""
    endpoint.delay = 0.3
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity="system")
    credential = app.extensions["identity"].settings.client_credential
    assert isinstance(credential, ManagedIdentity)
    barrier = threading.Barrier(8)
    got: list[str] = []

    def ask() -> None:
        barrier.wait(5)
        got.append(credential())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(got) == 8 and len(set(got)) == 1
    assert len(endpoint.calls) == 1


def _sign_in_reaches_the_callback(app: Flask, sign_in: SignIn) -> Any:
    client = app.test_client()
    callback = sign_in.provider.sign_in(sign_in.start(client, "/profile"))
    return sign_in.finish(client, callback)


@pytest.mark.parametrize(
    "fault",
    ["down", "error", "html", "slow", "wrong header", "unknown identity"],
)
def test_an_endpoint_that_fails_is_a_503(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    endpoint: ManagedIdentityEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    """Whatever the identity endpoint does wrong (nothing listening, a 500, an HTML page, no
    answer within the timeout, a refusal), the user's sign-in gets a 503 page, the app's token
    a 503, and the log says it was the managed identity."""
    identity = "system"
    if fault == "down":
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{free_port()}/msi/token")
    elif fault == "error":
        endpoint.status = 500
    elif fault == "html":
        endpoint.body = "<html><body>502 Bad Gateway</body></html>"
    elif fault == "slow":
        endpoint.delay = 2.5
    elif fault == "wrong header":
        monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    else:
        identity = "a4a4a4a4-0000-4000-8000-000000000004"
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity=identity, timeout=1)
    started = time.monotonic()
    answer = _sign_in_reaches_the_callback(app, sign_in)
    assert answer.status_code == 503
    assert "try again" in answer.get_data(as_text=True)
    assert time.monotonic() - started < 10
    api = app.test_client().get("/app-token", headers={"Accept": "application/json"})
    assert api.status_code == 503
    assert "managed identity" in caplog.text
    if fault == "unknown identity":
        assert "IDENTITY_MANAGED_IDENTITY" in caplog.text


def test_the_endpoint_back_up_serves_again(
    credential_app: Callable[..., Flask], sign_in: SignIn, endpoint: ManagedIdentityEndpoint
) -> None:
    """A failed endpoint answer is not kept: once it answers again, sign-ins work."""
    endpoint.status = 500
    app = credential_app(FEDERATED_CLIENT_ID, managed_identity="system")
    assert _sign_in_reaches_the_callback(app, sign_in).status_code == 503
    endpoint.status = 0
    time.sleep(5.5)  # MSAL holds a 5xx answer back for 5 seconds (no Retry-After): asking again sooner fails
    assert sign_in(app.test_client(), "/profile").status_code == 302


# -- a client assertion callable, and the token file helper ---------------------------------------------


def test_a_client_assertion_callable_signs_in_and_gets_tokens(
    credential_app: Callable[..., Flask], sign_in: SignIn, provider: LocalProvider
) -> None:
    """A callable returning a Kubernetes service account token the registration trusts."""
    calls: list[str] = []

    def assertion() -> str:
        token = workload_token(provider.workload_issuer_key)
        calls.append(token)
        return token

    app = credential_app(FEDERATED_CLIENT_ID, client_credential=assertion)
    tokens = signs_in_and_gets_tokens(app, sign_in, FEDERATED_CLIENT_ID)
    assert tokens["app"]["azpacr"] == "2"
    assert len(calls) == 2  # the code's redemption and the app token: once per token request
    assert credential_summary(app.extensions["identity"].settings.client_credential) == ("client_assertion", None)


@pytest.mark.parametrize("bad", ["raises", "empty", "not a string", "wrong subject"])
def test_a_failing_callable(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    provider: LocalProvider,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    """A callable that raises or returns nothing usable: 503 (the log names the failure, not
    its message); a token the registration does not trust: the provider refuses, 502."""

    def assertion() -> Any:
        if bad == "raises":
            raise RuntimeError("vault says no: token=s3cr3t-in-message")
        if bad == "empty":
            return "  "
        if bad == "not a string":
            return 42
        return workload_token(provider.workload_issuer_key, subject="system:serviceaccount:web:intruder")

    app = credential_app(FEDERATED_CLIENT_ID, client_credential=assertion)
    answer = _sign_in_reaches_the_callback(app, sign_in)
    assert answer.status_code == (502 if bad == "wrong subject" else 503)
    assert "s3cr3t-in-message" not in caplog.text
    if bad == "raises":
        assert "RuntimeError" in caplog.text
    if bad == "wrong subject":
        assert "refused the code: invalid_client" in caplog.text


def test_the_token_file_is_read_again_when_it_changes(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    provider: LocalProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """assertion_from_file() reads AZURE_FEDERATED_TOKEN_FILE; when Kubernetes replaces the
    file, the next token request sends the new token: an untrusted one fails, a good one works."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(workload_token(provider.workload_issuer_key) + "\n")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    source = assertion_from_file()
    app = credential_app(FEDERATED_CLIENT_ID, client_credential=source)
    signs_in_and_gets_tokens(app, sign_in, FEDERATED_CLIENT_ID)

    replaced = tmp_path / "new-token"
    replaced.write_text(workload_token(provider.workload_issuer_key, subject="system:serviceaccount:web:other"))
    os.replace(replaced, token_file)  # as the kubelet swaps it in
    assert _sign_in_reaches_the_callback(app, sign_in).status_code == 502

    good = workload_token(provider.workload_issuer_key)
    token_file.write_text(good)
    assert source() == good
    assert sign_in(app.test_client(), "/profile").status_code == 302


def test_the_token_file_setting_signs_in_follows_the_file_and_shows_in_the_doctor(
    credential_app: Callable[..., Flask], sign_in: SignIn, provider: LocalProvider, tmp_path: Path
) -> None:
    """IDENTITY_CLIENT_ASSERTION_FILE (an environment variable of the pod, no code) does what
    assertion_from_file() does: signs in, gets tokens, and sends the file's new token once it
    is replaced. The doctor names the file and never prints the token."""
    token_file = tmp_path / "azure-identity-token"
    first = workload_token(provider.workload_issuer_key)
    token_file.write_text(first + "\n")
    app = credential_app(FEDERATED_CLIENT_ID, flask_config={"IDENTITY_CLIENT_ASSERTION_FILE": str(token_file)})
    settings = app.extensions["identity"].settings
    assert settings.client_assertion_file == str(token_file)
    assert credential_summary(settings.client_credential) == ("client_assertion", None)
    signs_in_and_gets_tokens(app, sign_in, FEDERATED_CLIENT_ID)

    replaced = tmp_path / "new-token"
    replaced.write_text(workload_token(provider.workload_issuer_key, subject="system:serviceaccount:web:other"))
    os.replace(replaced, token_file)
    assert _sign_in_reaches_the_callback(app, sign_in).status_code == 502
    token_file.write_text(workload_token(provider.workload_issuer_key))
    assert sign_in(app.test_client(), "/profile").status_code == 302

    result = app.test_cli_runner().invoke(args=["identity", "doctor"])
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert str(token_file) in rows["client_assertion_file"] and "[IDENTITY_CLIENT_ASSERTION_FILE]" in result.output
    assert "a client assertion (value not shown)" in rows["client_credential"]
    assert first.split(".")[2] not in result.output


def test_the_token_file_helper_reads_only_when_the_file_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first.token.value\n")
    source = assertion_from_file(token_file)
    assert isinstance(source, AssertionFile)
    assert source() == "first.token.value"
    reads: list[int] = []
    original = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_text", counting)
        assert source() == source() == "first.token.value"
        assert reads == []
        token_file.write_text("second.token.value-longer")
        assert source() == "second.token.value-longer"
        assert reads == [1]


def test_the_token_file_helper_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_FEDERATED_TOKEN_FILE"):
        assertion_from_file()
    with pytest.raises(ConfigurationError, match="is not there"):
        assertion_from_file(tmp_path / "missing")
    gone = tmp_path / "token"
    gone.write_text("x.y.z")
    source = ClientAssertion(assertion_from_file(gone))
    gone.unlink()
    with pytest.raises(ProviderUnavailable, match="could not prove its identity"):
        source()


# -- start-up errors ---------------------------------------------------------------------------------------


def start(tmp_path: Path, **settings: Any) -> Auth:
    """Set Auth up on a new app with an Entra authority, a redirect URI and ``settings``."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["SECRET_KEY"] = "test-only-secret"
    return Auth(
        app,
        CLIENT_ID,
        redirect_uri="http://localhost:5000/getAToken",
        authority="https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555",
        **settings,
    )


@pytest.fixture
def good_pem(registered: tuple[rsa.RSAPrivateKey, x509.Certificate], tmp_path: Path) -> Path:
    key, certificate = registered
    return pem_file(tmp_path / "good.pem", key, certificate)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"client_credential": CLIENT_SECRET, "managed_identity": "system"}, ["CLIENT_CREDENTIAL", "MANAGED_IDENTITY"]),
        (
            {"client_credential": CLIENT_SECRET, "client_certificate_path": "PEM"},
            ["CLIENT_CREDENTIAL", "CLIENT_CERTIFICATE_PATH"],
        ),
        (
            {"client_certificate_path": "PEM", "managed_identity": "system"},
            ["CLIENT_CERTIFICATE_PATH", "MANAGED_IDENTITY"],
        ),
        (
            {"client_credential": CLIENT_SECRET, "client_assertion_file": "PEM"},
            ["CLIENT_CREDENTIAL", "CLIENT_ASSERTION_FILE"],
        ),
    ],
)
def test_two_kinds_at_once_are_refused(
    tmp_path: Path, good_pem: Path, settings: dict[str, Any], names: list[str]
) -> None:
    given = {k: (str(good_pem) if v == "PEM" else v) for k, v in settings.items()}
    with pytest.raises(ConfigurationError, match="Only one kind of client credential") as caught:
        start(tmp_path, **given)
    message = str(caught.value)
    assert all(f"IDENTITY_{name}" in message for name in names)
    assert CLIENT_SECRET not in message


def test_two_kinds_from_app_config_are_refused(tmp_path: Path, good_pem: Path) -> None:
    """The check holds whichever way each arrives (argument, IDENTITY_* key)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", IDENTITY_MANAGED_IDENTITY="system", IDENTITY_CLIENT_CREDENTIAL=CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match="IDENTITY_MANAGED_IDENTITY"):
        Auth(app, CLIENT_ID, redirect_uri="http://localhost/cb", authority="https://login.microsoftonline.com/t")


def test_no_credential_names_every_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        start(tmp_path)
    message = str(caught.value)
    for key in (
        "IDENTITY_CLIENT_CREDENTIAL",
        "IDENTITY_CLIENT_CERTIFICATE_PATH",
        "IDENTITY_MANAGED_IDENTITY",
        "IDENTITY_CLIENT_ASSERTION_FILE",
    ):
        assert key in message


def _bad_files(tmp_path: Path, key: Any, certificate: x509.Certificate) -> dict[str, tuple[Path, str | None, str]]:
    """Unusable certificate files: path, passphrase given, and what the message must say."""
    other_key, _ = new_certificate()
    expired_key, expired = new_certificate(days=-1, starts_in=-30)
    future_key, future = new_certificate(starts_in=2)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    _, ec_certificate = new_certificate(ec_key)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    garbage = tmp_path / "garbage.pfx"
    garbage.write_bytes(os.urandom(256))
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-----BEGIN " + b"A" * (2 << 20))
    return {
        "missing file": (tmp_path / "nowhere.pem", None, "could not be read"),
        "a folder": (folder, None, "could not be read"),
        "garbage": (garbage, None, "neither a PEM file nor a PFX file"),
        "huge": (huge, None, "larger than a certificate file can be"),
        "wrong PEM passphrase": (
            pem_file(tmp_path / "a.pem", key, certificate, PASSPHRASE),
            "wrong-9",
            "not its passphrase",
        ),
        "no PEM passphrase": (pem_file(tmp_path / "b.pem", key, certificate, PASSPHRASE), None, "is encrypted"),
        "needless passphrase": (pem_file(tmp_path / "c.pem", key, certificate), "wrong-9", "not encrypted"),
        "wrong PFX passphrase": (
            pfx_file(tmp_path / "a.pfx", key, certificate, PASSPHRASE),
            "wrong-9",
            "not its passphrase",
        ),
        "no PFX passphrase": (
            pfx_file(tmp_path / "b.pfx", key, certificate, PASSPHRASE),
            None,
            "PFX file with a passphrase",
        ),
        "certificate only": (pem_file(tmp_path / "d.pem", None, certificate), None, "holds no private key"),
        "key only": (pem_file(tmp_path / "e.pem", key, None), None, "holds no certificate"),
        "key of another certificate": (pem_file(tmp_path / "f.pem", other_key, certificate), None, "does not match"),
        "expired": (pem_file(tmp_path / "g.pem", expired_key, expired), None, "expired on"),
        "not yet valid": (pem_file(tmp_path / "h.pem", future_key, future), None, "not valid before"),
        "not RSA": (pem_file(tmp_path / "i.pem", ec_key, ec_certificate), None, "RSA certificates only"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "a folder",
        "garbage",
        "huge",
        "wrong PEM passphrase",
        "no PEM passphrase",
        "needless passphrase",
        "wrong PFX passphrase",
        "no PFX passphrase",
        "certificate only",
        "key only",
        "key of another certificate",
        "expired",
        "not yet valid",
        "not RSA",
    ],
)
def test_an_unusable_certificate_file_stops_start_up(
    tmp_path: Path, registered: tuple[rsa.RSAPrivateKey, x509.Certificate], case: str
) -> None:
    """Each says what is wrong with which file, naming the setting; none quotes the
    passphrase or the key."""
    key, certificate = registered
    path, passphrase, says = _bad_files(tmp_path, key, certificate)[case]
    with pytest.raises(ConfigurationError) as caught:
        start(tmp_path, client_certificate_path=str(path), client_certificate_passphrase=passphrase)
    message = str(caught.value)
    assert says in message
    assert "IDENTITY_CLIENT_CERTIFICATE_PATH" in message
    assert str(path) in message
    assert PASSPHRASE not in message and "wrong-9" not in message
    assert all(line not in message for line in key_lines(key))


def test_a_certificate_expiring_soon_warns_and_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, certificate = new_certificate(days=10)
    path = pem_file(tmp_path / "soon.pem", key, certificate)
    with caplog.at_level(logging.WARNING, logger="identity_flask"):
        start(tmp_path, client_certificate_path=str(path))
    assert "expires on" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"client_credential": CLIENT_SECRET, "client_certificate_passphrase": PASSPHRASE}, "CERTIFICATE_PASSPHRASE"),
        ({"client_credential": CLIENT_SECRET, "client_certificate_send_x5c": True}, "CERTIFICATE_SEND_X5C"),
        ({"managed_identity": "yes please"}, "IDENTITY_MANAGED_IDENTITY"),
        ({"managed_identity": CLIENT_ID}, "names the app's own client id"),
        ({"client_certificate_path": 5}, "must be a file path"),
        ({"client_credential": ["a", "list"]}, "IDENTITY_CLIENT_CREDENTIAL"),
        ({"client_assertion_file": "/nowhere/azure-identity-token"}, "IDENTITY_CLIENT_ASSERTION_FILE.*no file at"),
        ({"client_assertion_file": 5}, "IDENTITY_CLIENT_ASSERTION_FILE.*must be a file path"),
    ],
)
def test_other_credential_settings_are_checked(tmp_path: Path, settings: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        start(tmp_path, **settings)
    assert PASSPHRASE not in str(caught.value) and CLIENT_SECRET not in str(caught.value)


def test_the_managed_identity_may_come_from_app_config(tmp_path: Path) -> None:
    """App Service app settings arrive as IDENTITY_* keys; no request is made at start-up."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k", IDENTITY_MANAGED_IDENTITY=USER_IDENTITY_CLIENT_ID.upper(), IDENTITY_CLIENT_ID=CLIENT_ID
    )
    Auth(app, redirect_uri="http://localhost/cb", authority="https://login.microsoftonline.com/t")
    settings = app.extensions["identity"].settings
    assert settings.managed_identity == USER_IDENTITY_CLIENT_ID
    assert repr(settings.client_credential) == f"ManagedIdentity({USER_IDENTITY_CLIENT_ID!r})"


def test_credential_summary_names_every_kind(good_pem: Path) -> None:
    certificate = Certificate(good_pem)
    assert credential_summary(certificate) == ("certificate", certificate.not_after)
    assert credential_summary("a-secret") == ("secret", None)
    assert credential_summary(ManagedIdentity("system")) == ("managed_identity", None)
    assert credential_summary(lambda: "x") == ("client_assertion", None)
    assert credential_summary({"client_assertion": "x"}) == ("client_assertion", None)
    assert credential_summary({"private_key_pfx_path": "/nonexistent.pfx"}) == ("certificate", None)
    assert credential_summary(None) == ("none", None)


# -- no secret in any log line ---------------------------------------------------------------------------


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            text.append(logging.Formatter().formatException(record.exc_info))
        self.lines.append("\n".join(text))


@pytest.fixture
def debug_logs() -> Iterator[Collect]:
    """Every log record at DEBUG, of every logger (MSAL's, urllib3's and werkzeug's included)."""
    collect = Collect()
    root = logging.getLogger()
    names = ("", "identity_flask", "msal", "urllib3", "werkzeug", "requests")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(collect)
    yield collect
    root.removeHandler(collect)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_no_key_passphrase_or_assertion_in_any_log_line(
    credential_app: Callable[..., Flask],
    sign_in: SignIn,
    endpoint: ManagedIdentityEndpoint,
    provider: LocalProvider,
    registered: tuple[rsa.RSAPrivateKey, x509.Certificate],
    tmp_path: Path,
    debug_logs: Collect,
) -> None:
    """Sign-ins and tokens with a PFX certificate and its passphrase, a managed identity and
    a client assertion callable, logging everything at DEBUG: no line holds the passphrase,
    a line of the key, or any assertion the app sent."""
    key, certificate = registered
    path = pfx_file(tmp_path / "client.pfx", key, certificate, PASSPHRASE)
    sent: list[str] = []

    def assertion() -> str:
        sent.append(workload_token(provider.workload_issuer_key))
        return sent[-1]

    for app, client_id in (
        (
            credential_app(
                X5C_CLIENT_ID,
                client_certificate_path=str(path),
                client_certificate_passphrase=PASSPHRASE,
                client_certificate_send_x5c=True,
            ),
            X5C_CLIENT_ID,
        ),
        (credential_app(FEDERATED_CLIENT_ID, managed_identity="system"), FEDERATED_CLIENT_ID),
        (credential_app(FEDERATED_CLIENT_ID, client_credential=assertion), FEDERATED_CLIENT_ID),
    ):
        signs_in_and_gets_tokens(app, sign_in, client_id)
    assertions = sent + [token for _at, _exp, token in endpoint.issued]
    assert len(assertions) == 3
    assert len(debug_logs.lines) > 50  # MSAL and urllib3 did log at DEBUG
    secrets = [PASSPHRASE, IDENTITY_HEADER, *key_lines(key), *assertions, *(a.split(".")[2] for a in assertions)]
    leaks = [line[:200] for line in debug_logs.lines for secret in secrets if secret in line]
    assert leaks == []


def test_the_doctor_shows_the_certificate_and_never_its_passphrase(
    credential_app: Callable[..., Flask], registered: tuple[rsa.RSAPrivateKey, x509.Certificate], tmp_path: Path
) -> None:
    """``flask identity doctor`` reports the credential's kind and expiry from the settings above."""
    key, certificate = registered
    path = pfx_file(tmp_path / "client.pfx", key, certificate, PASSPHRASE)
    app = credential_app(
        CERTIFICATE_CLIENT_ID, client_certificate_path=str(path), client_certificate_passphrase=PASSPHRASE
    )
    result = app.test_cli_runner().invoke(args=["identity", "doctor"])
    assert "credential: a certificate valid until" in result.output
    assert str(path) in result.output
    assert PASSPHRASE not in result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "set (value not shown)" in rows["client_certificate_passphrase"]
    assert "a certificate (value not shown)" in rows["client_credential"]
    assert "[default]" not in rows["client_credential"]  # it came from the certificate setting
    assert all(line not in result.output for line in key_lines(key))
