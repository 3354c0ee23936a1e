"""``flask identity doctor``: each check against the real thing it checks (the local
provider up, stopped, slow or answering badly; Redis down, silent or full; file
stores, keys, proxies and certificates as deployments get them wrong), through
Flask's CLI runner and as a real ``flask`` process. No report shows a secret."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import Result
from conftest import REDIRECT_URI, b2c_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from flask import Flask
from localidp import CLIENT_ID, CLIENT_SECRET, TENANT_ID, LocalProvider, free_port, self_signed
from servers import RedisServer
from testapp import create_app
from werkzeug.middleware.proxy_fix import ProxyFix

from identity_flask import Auth

TESTS = Path(__file__).resolve().parent

#: Variables that tell the doctor about the deployment; each test starts without them.
DEPLOYMENT_VARIABLES = (
    "WEB_CONCURRENCY",
    "GUNICORN_CMD_ARGS",
    "PYTHON_ENABLE_GUNICORN_MULTIWORKERS",
    "WEBSITE_HOSTNAME",
    "WEBSITE_INSTANCE_ID",
    "FORWARDED_ALLOW_IPS",
    "FLASK_APP",
)

#: A key long enough to pass, and set in no environment variable.
STABLE_KEY = "doctor-test-key-5f0c2a7e9b1d4c3a8e6f"


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No deployment hints from the machine running the tests, and no gunicorn.conf.py in the folder."""
    for name in DEPLOYMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


def doctor(app: Flask, *args: str) -> Result:
    result: Result = app.test_cli_runner().invoke(args=["identity", "doctor", *args])
    return result


def check_line(output: str, name: str) -> str:
    """The report's line for the check ``name``."""
    found = [line for line in output.splitlines() if re.match(rf"^(OK|WARN|FAIL)\s+{re.escape(name)}: ", line)]
    assert len(found) == 1, f"no single line for {name!r} in:\n{output}"
    return found[0]


def statuses(output: str) -> dict[str, str]:
    """Each check's status, by name."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(OK|WARN|FAIL)\s+([^:]+): ", line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


def assert_no_secret(output: str, *more: str) -> None:
    for secret in (CLIENT_SECRET, STABLE_KEY, "test-only-secret", *more):
        assert secret not in output


# -- all well ------------------------------------------------------------------------------------


def test_every_check_passes_against_the_local_provider(idp: LocalProvider, tmp_path: Path) -> None:
    """A sound setup: every line OK, exit status 0, and each setting shown with its source."""
    app = create_app(
        str(tmp_path / "sessions"),
        auth=Auth(client_credential=CLIENT_SECRET, timeout=5),
        flask_config={"SECRET_KEY": STABLE_KEY},
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        authority=idp.entra_authority,
    )
    result = doctor(app)
    assert result.exit_code == 0, result.output
    assert set(statuses(result.output).values()) == {"OK"}
    assert set(statuses(result.output)) == {
        "settings",
        "authority",
        "redirect URI",
        "session store",
        "shared store",
        "SECRET_KEY",
        "proxy",
        "credential",
    }
    assert f"issuer {idp.origin}/{TENANT_ID}/v2.0." in check_line(result.output, "authority")
    assert "a test record was written, read back and deleted" in check_line(result.output, "session store")
    assert re.search(r"client_credential\s+a secret \(value not shown\)\s+\[argument\]", result.output)
    assert re.search(rf"client_id\s+{CLIENT_ID}\s+\[IDENTITY_CLIENT_ID\]", result.output)
    assert re.search(r"timeout\s+5\.0\s+\[argument\]", result.output)
    assert re.search(r"response_mode\s+query\s+\[default\]", result.output)
    assert "0 WARN, 0 FAIL" in result.output
    assert_no_secret(result.output)


def test_json_report(make_app: Callable[..., Flask]) -> None:
    """``--json``: the same checks for a machine, with ``ok`` and no secret."""
    result = doctor(make_app(flask_config={"SECRET_KEY": STABLE_KEY}), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert {c["name"]: c["status"] for c in report["checks"]}["authority"] == "OK"
    credential = next(s for s in report["settings"] if s["name"] == "client_credential")
    assert credential == {
        "name": "client_credential",
        "value": "a secret (value not shown)",
        "source": "IDENTITY_CLIENT_CREDENTIAL",
    }
    assert report["deployment"]["workers"] == 1
    assert_no_secret(result.output)


def test_the_doctor_does_not_leave_its_test_record(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """The round trip deletes what it wrote: the store holds no more files than before."""
    app = make_app(flask_config={"SECRET_KEY": STABLE_KEY})
    folder = Path(app.session_interface.cache._path)  # type: ignore[attr-defined]
    before = sorted(folder.iterdir())
    assert doctor(app).exit_code == 0
    assert sorted(folder.iterdir()) == before


# -- the provider ---------------------------------------------------------------------------------


def test_stopped_provider(make_app: Callable[..., Flask]) -> None:
    """Nothing listens at the authority: FAIL with what to check, exit 1."""
    app = make_app(authority=f"https://127.0.0.1:{free_port()}/{TENANT_ID}")
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "authority")
    assert line.startswith("FAIL")
    assert "could not be reached (ConnectionError)" in line
    assert "Fix: check IDENTITY_AUTHORITY" in line
    assert statuses(result.output)["session store"] == "OK"
    assert_no_secret(result.output)


def test_slow_provider_fails_within_the_timeout(idp: LocalProvider, make_app: Callable[..., Flask]) -> None:
    """A provider that stalls longer than IDENTITY_TIMEOUT: FAIL after about that long, not a hang."""
    app = make_app(timeout=1)
    idp.fault("/.well-known/openid-configuration", delay=8000, times=3)
    started = time.monotonic()
    result = doctor(app)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "did not answer within 1 s" in check_line(result.output, "authority")
    assert check_line(result.output, "authority").startswith("FAIL")
    assert elapsed < 6  # stalled 8 s: the margin is for a busy machine


def test_provider_answering_a_page_instead_of_its_configuration(
    idp: LocalProvider, make_app: Callable[..., Flask]
) -> None:
    """A proxy's HTML page where the discovery document should be: FAIL, not taken as metadata."""
    app = make_app()
    idp.fault("/.well-known/openid-configuration", status=200, body="<html>Sign in to the proxy</html>", times=3)
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "authority")
    assert line.startswith("FAIL")
    assert "did not give a usable discovery document" in line
    assert "<html>" not in result.output


def test_provider_with_an_unknown_tenant(idp: LocalProvider, make_app: Callable[..., Flask]) -> None:
    """A 404 from discovery: the tenant in the authority is wrong."""
    app = make_app(authority=f"{idp.origin}/no-such-tenant")
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "authority")
    assert line.startswith("FAIL")
    assert "Fix: check the tenant or path in IDENTITY_AUTHORITY." in line


def test_b2c_user_flows_are_each_checked(idp: LocalProvider, tmp_path: Path) -> None:
    """B2C: the sign-in, edit-profile and reset-password authorities each get a line; the
    B2C settings are shown as given."""
    app = create_app(str(tmp_path / "s"), flask_config={"SECRET_KEY": STABLE_KEY}, **b2c_settings(idp))
    result = doctor(app)
    assert result.exit_code == 0, result.output
    for name in ("authority", "authority (edit profile)", "authority (reset password)"):
        assert check_line(result.output, name).startswith("OK")
    assert re.search(r"b2c_tenant_name\s+\S+\s+\[IDENTITY_B2C_TENANT_NAME\]", result.output)


# -- the session store ----------------------------------------------------------------------------


def test_down_redis(make_app: Callable[..., Flask]) -> None:
    """Nothing listens where SESSION_REDIS points: FAIL naming the address, never its password."""
    port = free_port()
    client = redis.Redis.from_url(f"redis://:redis-password-7x7@127.0.0.1:{port}/0")
    app = make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client, "SECRET_KEY": STABLE_KEY})
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "session store")
    assert line.startswith("FAIL")
    assert f"Redis at 127.0.0.1:{port} failed the round trip (ConnectionError: nothing answers at that address)" in line
    assert "Fix: start the store or correct SESSION_REDIS" in line
    assert check_line(result.output, "shared store").startswith("OK")
    assert_no_secret(result.output, "redis-password-7x7")


def test_store_that_accepts_connections_and_never_answers(make_app: Callable[..., Flask]) -> None:
    """A store that holds the connection open in silence: FAIL after the timeout, not a hang."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        client = redis.Redis(host="127.0.0.1", port=port)
        app = make_app(timeout=1, flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client})
        started = time.monotonic()
        result = doctor(app)
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    assert result.exit_code == 1
    assert check_line(result.output, "session store") == (
        f"FAIL  session store: Redis at 127.0.0.1:{port} did not answer within 1 s. Fix: start the store or correct "
        "SESSION_REDIS (host, port, TLS, password), and check it is not full."
    )


@pytest.fixture
def redis_app(redis_server: RedisServer, make_app: Callable[..., Flask]) -> Iterator[Flask]:
    client = redis.Redis.from_url(redis_server.url)
    yield make_app(flask_config={"SESSION_TYPE": "redis", "SESSION_REDIS": client, "SECRET_KEY": STABLE_KEY})
    client.config_set("maxmemory", 0)
    client.close()


@pytest.mark.redis
def test_redis_store_is_shared(redis_app: Flask, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis with several workers: the round trip passes and the store counts as shared."""
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    result = doctor(redis_app)
    assert check_line(result.output, "session store").startswith("OK")
    assert check_line(result.output, "shared store").startswith(
        f"OK    shared store: Redis at 127.0.0.1:{redis_server.port} is reached over the network"
    )
    assert "WEB_CONCURRENCY gives 4 workers" in result.output


@pytest.mark.redis
def test_full_redis(redis_app: Flask) -> None:
    """Redis at maxmemory with no eviction refuses writes: FAIL saying the store is full."""
    redis_app.config["SESSION_REDIS"].config_set("maxmemory", 1)
    result = doctor(redis_app)
    assert result.exit_code == 1
    line = check_line(result.output, "session store")
    assert "(OutOfMemoryError: the store is full: maxmemory reached with no eviction)" in line


def test_file_store_with_several_workers(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """A file store with WEB_CONCURRENCY=4: a warning (shared only on this machine), exit 0, 1 with --strict."""
    app = make_app(flask_config={"SECRET_KEY": STABLE_KEY})
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    result = doctor(app)
    assert result.exit_code == 0
    line = check_line(result.output, "shared store")
    assert line.startswith("WARN  shared store: a file store in ")
    assert "shared by the 4 workers only while they all run on this machine" in line
    assert "(WEB_CONCURRENCY gives 4 workers)" in line
    assert "Fix: use a store every instance reaches: SESSION_TYPE = 'redis'" in line
    assert doctor(app, "--strict").exit_code == 1


def test_file_store_with_several_instances(make_app: Callable[..., Flask]) -> None:
    """A file store and --instances 3: FAIL, each instance would see its own sessions."""
    result = doctor(make_app(), "--instances", "3")
    assert result.exit_code == 1
    assert "and 3 instances are expected (--instances 3)" in check_line(result.output, "shared store")
    assert check_line(result.output, "shared store").startswith("FAIL")


def test_worker_counts_from_gunicorn_settings(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are read from GUNICORN_CMD_ARGS, and from gunicorn.conf.py in the current folder."""
    app = make_app(flask_config={"SECRET_KEY": STABLE_KEY})
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--bind 0.0.0.0:8000 --workers=3 --timeout 60")
    assert "(GUNICORN_CMD_ARGS gives 3 workers)" in check_line(doctor(app).output, "shared store")
    monkeypatch.delenv("GUNICORN_CMD_ARGS")
    Path("gunicorn.conf.py").write_text("import multiprocessing\nworkers = multiprocessing.cpu_count() * 2 + 1\n")
    line = check_line(doctor(app).output, "shared store")
    assert line.startswith("WARN")
    assert "gunicorn.conf.py gives" in line


def test_file_store_on_app_service(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """App Service with sessions in files outside /home: FAIL, a scaled-out app loops on sign-in."""
    app = make_app(redirect_uri="https://myapp.azurewebsites.net/getAToken", flask_config={"SECRET_KEY": STABLE_KEY})
    monkeypatch.setenv("WEBSITE_HOSTNAME", "myapp.azurewebsites.net")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "0123456789abcdef")
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "shared store")
    assert line.startswith("FAIL")
    assert "outside /home on App Service: each instance has its own copy" in line


def test_in_memory_store_with_several_workers(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """cachelib's SimpleCache lives in each process: FAIL with several workers."""
    from cachelib import SimpleCache

    app = make_app(flask_config={"SESSION_CACHELIB": SimpleCache(), "SECRET_KEY": STABLE_KEY})
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    result = doctor(app)
    assert result.exit_code == 1
    assert check_line(result.output, "shared store").startswith(
        "FAIL  shared store: a SimpleCache store in this process's memory is private to each process"
    )


def test_read_only_session_folder(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """A session folder the app cannot write to (a file where the folder should be): FAIL."""
    from cachelib.file import FileSystemCache

    folder = tmp_path / "readonly"
    app = make_app(flask_config={"SESSION_CACHELIB": FileSystemCache(str(folder)), "SECRET_KEY": STABLE_KEY})
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    result = doctor(app)
    assert result.exit_code == 1
    assert check_line(result.output, "session store").startswith(
        f"FAIL  session store: a file store in {folder}: a record written could not be read back."
    )


# -- redirect URI and proxy -----------------------------------------------------------------------


def test_http_redirect_uri_on_a_public_host(make_app: Callable[..., Flask]) -> None:
    """http on a public host: FAIL (the code would travel in clear, and Entra refuses it)."""
    result = doctor(make_app(redirect_uri="http://myapp.example.com/getAToken"))
    assert result.exit_code == 1
    line = check_line(result.output, "redirect URI")
    assert line.startswith("FAIL  redirect URI: http://myapp.example.com/getAToken is plain http on the public host")
    assert "AADSTS50011" in line
    assert "Fix: use https://myapp.example.com/getAToken" in line


def test_redirect_host_not_in_trusted_hosts(make_app: Callable[..., Flask]) -> None:
    """A redirect URI whose host TRUSTED_HOSTS does not list: Flask would answer the callback 400."""
    app = make_app(
        redirect_uri="https://myapp.example.com/getAToken", flask_config={"TRUSTED_HOSTS": ["other.example.com"]}
    )
    line = check_line(doctor(app).output, "redirect URI")
    assert line.startswith("FAIL")
    assert "is not in TRUSTED_HOSTS: Flask answers the callback 400" in line


def test_bare_path_redirect_uri(make_app: Callable[..., Flask]) -> None:
    """A bare path with SERVER_NAME: the URI to register is named."""
    app = make_app(redirect_uri="/getAToken", flask_config={"SERVER_NAME": "myapp.example.com"})
    line = check_line(doctor(app).output, "redirect URI")
    assert line.startswith("OK")
    assert "register https://myapp.example.com/getAToken" in line


def test_password_in_a_redirect_uri_is_masked(make_app: Callable[..., Flask]) -> None:
    """User info in a URL (a mistake, but a secret) is not repeated in the report."""
    result = doctor(make_app(redirect_uri="https://admin:url-password-9q9@myapp.example.com/getAToken"))
    assert "https://***@myapp.example.com/getAToken" in result.output
    assert_no_secret(result.output, "url-password-9q9")


def test_localhost_redirect_uri_on_app_service(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployed to App Service with the development redirect URI still set: FAIL naming the one to use."""
    app = make_app(redirect_uri="http://localhost:5000/getAToken")
    monkeypatch.setenv("WEBSITE_HOSTNAME", "myapp.azurewebsites.net")
    line = check_line(doctor(app).output, "redirect URI")
    assert line.startswith("FAIL")
    assert "Fix: set IDENTITY_REDIRECT_URI to https://myapp.azurewebsites.net/getAToken" in line


def test_missing_proxy_fix_on_app_service(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """App Service, a bare-path redirect URI and no ProxyFix: the app would send http://... (FAIL);
    with ProxyFix(x_proto=1, x_host=1) applied, OK."""
    app = make_app(redirect_uri="/getAToken", flask_config={"TRUSTED_HOSTS": ["myapp.azurewebsites.net"]})
    monkeypatch.setenv("WEBSITE_HOSTNAME", "myapp.azurewebsites.net")
    result = doctor(app)
    assert result.exit_code == 1
    line = check_line(result.output, "proxy")
    assert line.startswith("FAIL  proxy: App Service's front end (myapp.azurewebsites.net) terminates TLS")
    assert "built as http://.../getAToken" in line
    assert "Fix: apply werkzeug's ProxyFix" in line
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    line = check_line(doctor(app).output, "proxy")
    assert line == (
        "OK    proxy: ProxyFix is applied (x_proto=1, x_host=1); App Service's front end "
        "(myapp.azurewebsites.net) terminates TLS."
    )


def test_https_redirect_uri_while_the_app_sees_http(make_app: Callable[..., Flask]) -> None:
    """An https redirect URI, and nothing that would let the app see https: a warning."""
    result = doctor(make_app(redirect_uri="https://myapp.example.com/getAToken"))
    line = check_line(result.output, "proxy")
    assert line.startswith("WARN  proxy: the redirect URI is https, but this app sees plain http")


def test_proxy_fix_without_x_proto(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """ProxyFix applied for the client address only: https still unseen."""
    app = make_app(redirect_uri="https://myapp.azurewebsites.net/getAToken")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=0)  # type: ignore[method-assign]
    monkeypatch.setenv("WEBSITE_HOSTNAME", "myapp.azurewebsites.net")
    line = check_line(doctor(app).output, "proxy")
    assert line.startswith("WARN  proxy: ProxyFix is applied (x_proto=0, x_host=0), but x_proto=0")


# -- SECRET_KEY -----------------------------------------------------------------------------------


def test_short_secret_key(make_app: Callable[..., Flask]) -> None:
    result = doctor(make_app(flask_config={"SECRET_KEY": "dev"}))
    line = check_line(result.output, "SECRET_KEY")
    assert line.startswith("WARN")
    assert "only 3 characters long" in line


def test_secret_key_from_the_environment(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    """A key read from an environment variable is named by the variable, never shown."""
    monkeypatch.setenv("MY_APP_SECRET_KEY", STABLE_KEY + "-from-env")
    app = make_app(flask_config={"SECRET_KEY": os.environ["MY_APP_SECRET_KEY"]})
    result = doctor(app)
    assert check_line(result.output, "SECRET_KEY") == (
        "OK    SECRET_KEY: read from the environment variable MY_APP_SECRET_KEY (not compared in a second process)."
    )
    assert_no_secret(result.output, STABLE_KEY + "-from-env")


def test_unverifiable_secret_key_with_several_workers(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers and a key the doctor cannot compare across processes: a warning saying how to compare."""
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    line = check_line(doctor(make_app(flask_config={"SECRET_KEY": STABLE_KEY})).output, "SECRET_KEY")
    assert line.startswith("WARN")
    assert "run `flask --app <module> identity doctor` to compare" in line


# -- the credential -------------------------------------------------------------------------------


def _certificate(days: float) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, self_signed(key, "doctor test", days=days, starts_in=-400)


def _pem_credential(days: float) -> tuple[dict[str, str], str]:
    key, certificate = _certificate(days)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credential = {
        "private_key": private,
        "thumbprint": certificate.fingerprint(hashes.SHA1()).hex().upper(),  # the thumbprint Entra shows
        "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
    }
    body = private.splitlines()[1]
    return credential, body


@pytest.mark.parametrize(
    ("days", "status", "text"),
    [
        (400, "OK", "a certificate valid until "),
        (10, "WARN", "a certificate that expires on "),
        (-1, "FAIL", "a certificate that expired on "),
    ],
)
def test_certificate_expiry(make_app: Callable[..., Flask], days: float, status: str, text: str) -> None:
    """A year left: OK; ten days: WARN; expired: FAIL (exit 1). The private key never appears."""
    credential, key_line = _pem_credential(days)
    result = doctor(make_app(client_credential=credential, flask_config={"SECRET_KEY": STABLE_KEY}))
    line = check_line(result.output, "credential")
    assert line.startswith(f"{status:<4}  credential: {text}")
    assert result.exit_code == (1 if status == "FAIL" else 0)
    assert re.search(r"client_credential\s+a certificate \(value not shown\)", result.output)
    assert_no_secret(result.output, key_line, credential["thumbprint"])


def test_pfx_certificate_with_passphrase(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """A PFX file and its passphrase: the expiry is read, the passphrase never shown."""
    key, certificate = _certificate(90)
    passphrase = "pfx-passphrase-3k3"
    data = pkcs12.serialize_key_and_certificates(
        b"doctor", key, certificate, None, serialization.BestAvailableEncryption(passphrase.encode())
    )
    path = tmp_path / "app.pfx"
    path.write_bytes(data)
    credential = {"private_key_pfx_path": str(path), "passphrase": passphrase}
    result = doctor(make_app(client_credential=credential, flask_config={"SECRET_KEY": STABLE_KEY}))
    assert check_line(result.output, "credential").startswith("OK    credential: a certificate valid until ")
    assert_no_secret(result.output, passphrase)


def test_pfx_with_a_wrong_passphrase(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """A PFX the passphrase does not open: the expiry is unknown (a warning), the passphrase unshown."""
    key, certificate = _certificate(90)
    data = pkcs12.serialize_key_and_certificates(
        b"doctor", key, certificate, None, serialization.BestAvailableEncryption(b"the-right-one")
    )
    path = tmp_path / "app.pfx"
    path.write_bytes(data)
    credential = {"private_key_pfx_path": str(path), "passphrase": "wrong-passphrase-5t5"}
    result = doctor(make_app(client_credential=credential))
    assert check_line(result.output, "credential").startswith(
        "WARN  credential: a certificate (value not shown) whose expiry could not be read here."
    )
    assert_no_secret(result.output, "wrong-passphrase-5t5", "the-right-one")


# -- settings -------------------------------------------------------------------------------------


def test_misspelt_setting(make_app: Callable[..., Flask]) -> None:
    """An IDENTITY_* key no setting reads: a warning with the likely intended name."""
    result = doctor(make_app(flask_config={"IDENTITY_REDIRECT_URL": "https://elsewhere.example.com/cb"}))
    line = check_line(result.output, "settings")
    assert line.startswith("WARN  settings: app.config has IDENTITY_* keys that no setting reads: ")
    assert "IDENTITY_REDIRECT_URL (did you mean IDENTITY_REDIRECT_URI?)" in line


# -- as a real `flask` process ---------------------------------------------------------------------


def _app_file(tmp_path: Path, provider: LocalProvider, secret_key: str) -> Path:
    """A module serving the test app, for ``flask --app``; ``secret_key`` is Python source."""
    source = f"""
import os, sys
sys.path.insert(0, {str(TESTS)!r})
from testapp import create_app

app = create_app(
    {str(tmp_path / "sessions")!r},
    flask_config={{"SECRET_KEY": {secret_key}}},
    client_id={CLIENT_ID!r},
    client_credential={CLIENT_SECRET!r},
    redirect_uri={REDIRECT_URI!r},
    authority={provider.entra_authority!r},
)
"""
    path = tmp_path / "doctor_app.py"
    path.write_text(source)
    return path


def _flask(app_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_VARIABLES}
    environment.update(env)
    command = [sys.executable, "-m", "flask", "--app", str(app_file), "identity", "doctor", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120, check=False)


def test_flask_identity_doctor_as_a_process(idp: LocalProvider, tmp_path: Path) -> None:
    """`flask --app ... identity doctor`: all OK, exit 0, SECRET_KEY compared in a second process."""
    done = _flask(_app_file(tmp_path, idp, repr(STABLE_KEY)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(statuses(done.stdout).values()) == {"OK"}
    assert check_line(done.stdout, "SECRET_KEY") == "OK    SECRET_KEY: the same in a second process loading the app."
    assert_no_secret(done.stdout + done.stderr)


def test_random_secret_key_with_several_workers(idp: LocalProvider, tmp_path: Path) -> None:
    """A key made with os.urandom at each start, and WEB_CONCURRENCY=4: FAIL, exit 1."""
    done = _flask(_app_file(tmp_path, idp, "os.urandom(32).hex()"), WEB_CONCURRENCY="4")
    assert done.returncode == 1, done.stdout + done.stderr
    line = check_line(done.stdout, "SECRET_KEY")
    assert line.startswith("FAIL  SECRET_KEY: differs in a second process loading the app")
    assert "a sign-in started on one worker fails on another (WEB_CONCURRENCY gives 4 workers)" in line
    assert "Fix: set SECRET_KEY from an environment variable" in line
    report = json.loads(_flask(_app_file(tmp_path, idp, "os.urandom(32).hex()"), "--json", WEB_CONCURRENCY="4").stdout)
    assert report["ok"] is False
    assert {c["name"]: c["status"] for c in report["checks"]}["SECRET_KEY"] == "FAIL"
