"""``flask identity doctor``: check an app's setup and say what to fix.

The extension adds the ``identity`` command group to ``app.cli`` in
:meth:`~identity_flask.Auth.init_app`. ``doctor`` prints the settings as
resolved, with where each came from, then one line per check:

- ``authority``: the provider's discovery document is reachable within the
  configured ``timeout``, usable, and names its issuer;
- ``redirect URI``: its scheme and host, against ``SERVER_NAME``,
  ``TRUSTED_HOSTS`` and App Service's host;
- ``session store``: a test record written, read back and deleted through
  the app's Flask-Session interface;
- ``shared store``: whether every worker and instance the deployment is
  expected to run sees the same sessions;
- ``SECRET_KEY``: set, long enough, and the same in a second process;
- ``proxy``: whether https is seen through a TLS-terminating proxy;
- ``credential``: its kind, and a certificate's expiry.

Each line is ``OK``, ``WARN`` or ``FAIL`` with a short fix; the exit status
is 1 when a check fails (or warns, with ``--strict``). No credential value,
passphrase or key is ever printed: the credential appears as its kind.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import requests
import urllib3
from cachelib.file import FileSystemCache
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from werkzeug.sansio.utils import host_is_trusted

from . import config
from .app_state import current_app_state
from .bearer import discovery_url
from .client import _BadAnswer, _discovery_document, _TimeoutSession
from .config import Authority, Settings
from .credentials import credential_summary

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The three outcomes of a check, from good to bad.
OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}

#: A certificate expiring within this many days is a warning.
EXPIRY_WARNING_DAYS = 30

#: A ``SECRET_KEY`` shorter than this is a warning (``secrets.token_hex()`` gives 64 characters).
MIN_SECRET_KEY_LENGTH = 16

#: Seconds the second process that loads the app to compare ``SECRET_KEY`` may take.
SECOND_LOAD_TIMEOUT = 60.0

#: The line the ``key-fingerprint`` command prints, followed by the fingerprint.
_FINGERPRINT_MARK = "identity-flask-key-fingerprint:"
_FINGERPRINT_PURPOSE = b"identity_flask doctor: the same SECRET_KEY in every process?"

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

#: Where settings come from, as :attr:`AppState.setting_sources` records them.
ARGUMENT, DEFAULT = "argument", "default"

#: The ``flask identity`` command group; :func:`register` adds it to an app's CLI.
identity = AppGroup("identity", help="identity_flask: check this app's sign-in setup.")


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    #: What was checked, e.g. ``"authority"``.
    name: str
    #: :data:`OK`, :data:`WARN` or :data:`FAIL`.
    status: str
    #: What was found.
    message: str
    #: What to do about it; empty when nothing is to be done.
    fix: str = ""

    def line(self) -> str:
        """The check as one line of the report."""
        text = f"{self.status:<4}  {self.name}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


@dataclasses.dataclass(frozen=True)
class Deployment:
    """What the environment says about how many processes will serve the app.

    Nothing here is certain: a worker count comes from gunicorn's settings in
    the environment (or the ``--workers`` option), and App Service's variables
    say the app may run on several instances without saying how many.
    """

    #: Worker processes per instance (1 when nothing says otherwise).
    workers: int
    #: Instances, when known (``--instances``); ``None`` when unknown.
    instances: int | None
    #: ``WEBSITE_HOSTNAME`` or ``WEBSITE_INSTANCE_ID`` is set: running on Azure App Service.
    app_service: bool
    #: What the counts were read from, for the report.
    evidence: tuple[str, ...]

    @property
    def several_instances(self) -> bool:
        """More than one instance is known, or possible at any time (App Service scales out)."""
        return (self.instances or 1) > 1 or (self.instances is None and self.app_service)

    @property
    def several_processes(self) -> bool:
        """More than one process may serve the app's requests."""
        return self.workers > 1 or self.several_instances

    def describe(self) -> str:
        """The evidence in a few words."""
        return "; ".join(self.evidence) if self.evidence else "nothing says more than one worker"


def register(app: Flask, given: Mapping[str, Any]) -> None:
    """Add ``flask identity`` to ``app``'s CLI and record where each setting came from.

    Called by :meth:`~identity_flask.Auth.init_app` once the app's state exists.

    :param given: the arguments the :class:`~identity_flask.Auth` object was built with.
    """
    app.extensions["identity"].setting_sources = setting_sources(app.config, given)
    if "identity" in app.cli.commands:
        logger.debug("The app has its own `flask identity` command; the doctor is not added")
    else:
        app.cli.add_command(identity)


def setting_sources(app_config: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, str]:
    """Where each setting of :data:`identity_flask.config.DEFAULTS` comes from, by
    the rule :func:`identity_flask.config.resolve` applies: the argument, else
    ``IDENTITY_<NAME>`` in ``app.config``, else the default (``None`` and ``""``
    count as not given).

    :return: for each name, ``"argument"``, ``"IDENTITY_<NAME>"`` or ``"default"``.
    """
    sources: dict[str, str] = {}
    for name in config.DEFAULTS:
        key = "IDENTITY_" + name.upper()
        if given.get(name) is not None and given.get(name) != "":
            sources[name] = ARGUMENT
        elif app_config.get(key) is not None and app_config.get(key) != "":
            sources[name] = key
        else:
            sources[name] = DEFAULT
    return sources


@identity.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes per instance in production, if the environment does not say (WEB_CONCURRENCY, ...).",
)
@click.option("--instances", type=click.IntRange(min=1), help="Instances the app runs on in production.")
@click.option("--strict", is_flag=True, help="Exit with status 1 on warnings too.")
def doctor(as_json: bool, workers: int | None, instances: int | None, strict: bool) -> None:
    """Check this app's sign-in setup: settings, provider, redirect URI,
    session store, SECRET_KEY, proxy and credential."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = current_app_state()
    settings = state.settings
    deployment = detect_deployment(os.environ, workers=workers, instances=instances)
    rows = settings_rows(settings, state.setting_sources)
    checks = [
        check_setting_keys(app.config),
        *(check_authority(authority, settings.timeout) for authority in _authorities(settings)),
        check_redirect_uri(app, settings, os.environ),
        check_session_store(app, settings.timeout),
        check_shared_store(app, deployment),
        check_secret_key(app, deployment, _second_process_fingerprint),
        check_proxy(app, settings, os.environ),
        check_credential(settings.client_credential),
    ]
    worst = max((_RANK[c.status] for c in checks), default=0)
    failed = worst == _RANK[FAIL] or (strict and worst == _RANK[WARN])
    if as_json:
        report = {
            "app": app.name,
            "settings": rows,
            "deployment": dataclasses.asdict(deployment),
            "checks": [dataclasses.asdict(c) for c in checks],
            "ok": not failed,
        }
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"identity_flask doctor: app {app.name!r}")
        click.echo("")
        click.echo("Settings (value, and where it came from):")
        width = max(len(r["name"]) for r in rows) if rows else 0
        for row in rows:
            click.echo(f"  {row['name']:<{width}}  {row['value']}  [{row['source']}]")
        click.echo("")
        click.echo("Checks:")
        for check in checks:
            click.echo(check.line())
        counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
        click.echo("")
        click.echo(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
    if failed:
        click.get_current_context().exit(1)


@identity.command("key-fingerprint", hidden=True)
def key_fingerprint() -> None:
    """Print a digest of ``SECRET_KEY`` (not the key), for ``doctor`` to compare across processes."""
    key = current_app.config.get("SECRET_KEY")
    click.echo(f"{_FINGERPRINT_MARK} {fingerprint(key) if key else '-'}")


def fingerprint(key: str | bytes) -> str:
    """A keyed digest of a fixed text under ``key``: equal for equal keys, and telling nothing of the key."""
    raw = key.encode() if isinstance(key, str) else bytes(key)
    return hmac.new(raw, _FINGERPRINT_PURPOSE, hashlib.sha256).hexdigest()[:32]


# -- settings -------------------------------------------------------------------------------------


def settings_rows(settings: Settings, sources: Mapping[str, str]) -> list[dict[str, str]]:
    """The settings as resolved, for the report: name, value shown, and source.

    Settings left at an empty default are left out. The client credential is
    shown as its kind only; user names and passwords in URLs are masked.
    """
    rows = []
    for name in config.DEFAULTS:
        source = sources.get(name, DEFAULT)
        value = _resolved(settings, name)
        if name == "client_credential":
            kind, _expiry = credential_summary(value)
            shown = f"a {kind.replace('_', ' ')} (value not shown)"
            # The credential may come from a certificate file, managed identity or assertion file setting.
            given = [sources[k] for k in config.CREDENTIAL_SETTINGS if sources.get(k, DEFAULT) != DEFAULT]
            source = given[0] if given else source
        elif name == "client_certificate_passphrase":
            if source == DEFAULT:
                continue
            shown = "set (value not shown)"
        else:
            # The authority settings have no default of their own: a B2C authority is
            # built from the b2c_* settings, and read back here only from those given.
            derived = name in ("authority", "oidc_authority") or name.startswith("b2c_")
            if source == DEFAULT and (derived or value in (None, (), "")):
                continue
            shown = _shown(value)
        rows.append({"name": name, "value": shown, "source": source})
    return rows


def _resolved(settings: Settings, name: str) -> Any:
    """The resolved value of setting ``name``; the authority settings are read back from the authorities."""
    authority = settings.authority
    if name == "authority":
        return authority.url if authority.kind != "oidc" else None
    if name == "oidc_authority":
        return authority.url if authority.kind == "oidc" else None
    if name.startswith("b2c_"):
        return _b2c_part(settings, name)
    return getattr(settings, name, None)


def _b2c_part(settings: Settings, name: str) -> str | None:
    """A B2C setting read back from the user flows' authorities, ``<host>/<tenant>.onmicrosoft.com/<flow>``."""
    if settings.authority.kind != "b2c":
        return None
    flows = {
        "b2c_signup_signin_user_flow": settings.authority,
        "b2c_edit_profile_user_flow": settings.edit_profile_authority,
        "b2c_reset_password_user_flow": settings.reset_password_authority,
    }
    parts = urlsplit(settings.authority.url)
    if name == "b2c_tenant_name":
        return parts.path.strip("/").split("/")[0].removesuffix(".onmicrosoft.com")
    if name == "b2c_authority_host":
        return f"{parts.scheme}://{parts.netloc}"
    flow = flows.get(name)
    return flow.url.rstrip("/").rsplit("/", 1)[-1] if flow is not None else None


def _shown(value: Any) -> str:
    if callable(value):
        return str(getattr(value, "__qualname__", None) or getattr(value, "__name__", "a view function"))
    if isinstance(value, (tuple, list, frozenset, set)):
        return ", ".join(_shown(v) for v in value) or "(none)"
    text = _mask_userinfo(str(value))
    return text if len(text) <= 100 else text[:97] + "..."


def _mask_userinfo(text: str) -> str:
    """``text`` with a URL's ``user:password@`` replaced, should a URL carry one."""
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if "@" not in parts.netloc:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


def check_setting_keys(app_config: Mapping[str, Any]) -> Check:
    """``IDENTITY_*`` keys in ``app.config`` that no setting reads: usually a misspelling."""
    known = {"IDENTITY_" + n.upper() for n in (*config.DEFAULTS, *config.API_DEFAULTS)}
    unknown = sorted(k for k in app_config if isinstance(k, str) and k.startswith("IDENTITY_") and k not in known)
    if not unknown:
        return Check("settings", OK, "resolved; every IDENTITY_* key in app.config is a known setting.")
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return Check(
        "settings",
        WARN,
        "app.config has IDENTITY_* keys that no setting reads: " + ", ".join(hints) + ".",
        "rename or remove them; they are ignored as they are.",
    )


# -- authority ------------------------------------------------------------------------------------


def _authorities(settings: Settings) -> list[tuple[str, Authority]]:
    found = [("authority", settings.authority)]
    if settings.edit_profile_authority is not None:
        found.append(("authority (edit profile)", settings.edit_profile_authority))
    if settings.reset_password_authority is not None:
        found.append(("authority (reset password)", settings.reset_password_authority))
    return found


def check_authority(named: tuple[str, Authority], timeout: float) -> Check:
    """The authority's discovery document: fetched within ``timeout``, usable, and its issuer."""
    name, authority = named
    key = "IDENTITY_OIDC_AUTHORITY" if authority.kind == "oidc" else "IDENTITY_AUTHORITY"
    if authority.kind == "b2c":
        key = "IDENTITY_B2C_TENANT_NAME, the user flows and IDENTITY_B2C_AUTHORITY_HOST"
    url = discovery_url(authority)
    where = _mask_userinfo(url)
    http = _TimeoutSession(timeout)
    started = time.monotonic()
    try:
        with http:
            response = _within(timeout * 2 + 1, lambda: http.get(url))
            document = _discovery_document(response)
    except TimeoutError:
        return Check(name, FAIL, f"{where} did not answer within {timeout:g} s.", _reach_fix(key))
    except _BadAnswer as exc:
        status = exc.response.status_code if exc.response is not None else None
        fix = f"check the tenant or path in {key}." if status == 404 else f"check {key}: it must name the issuer."
        return Check(name, FAIL, f"{where} did not give a usable discovery document ({exc}).", fix)
    except requests.exceptions.SSLError:
        return Check(
            name,
            FAIL,
            f"{where}: the TLS connection failed (the provider's certificate is not trusted here).",
            "trust its certificate authority (REQUESTS_CA_BUNDLE), or check for a TLS-inspecting proxy.",
        )
    except requests.exceptions.Timeout:
        return Check(name, FAIL, f"{where} did not answer within {timeout:g} s.", _reach_fix(key))
    except requests.exceptions.RequestException as exc:
        if _timed_out(exc):
            return Check(name, FAIL, f"{where} did not answer within {timeout:g} s.", _reach_fix(key))
        return Check(name, FAIL, f"{where} could not be reached ({type(exc).__name__}).", _reach_fix(key))
    elapsed = time.monotonic() - started
    issuer = str(document.get("issuer") or "")
    found = f"{where} answered in {elapsed * 1000:.0f} ms; issuer {issuer or '(none)'}."
    if authority.kind == "oidc" and issuer.rstrip("/") != authority.url.rstrip("/"):
        return Check(
            name,
            WARN,
            found + f" The issuer differs from the configured {_mask_userinfo(authority.url)}.",
            f"set {key} to the issuer exactly as the provider names it.",
        )
    if elapsed > timeout / 2:
        return Check(
            name,
            WARN,
            found + f" That is more than half the timeout ({timeout:g} s).",
            "raise IDENTITY_TIMEOUT, or find why the provider is slow from here (proxy, DNS).",
        )
    return Check(name, OK, found)


def _timed_out(exc: requests.exceptions.RequestException) -> bool:
    """Whether ``exc`` is a timeout; with retries configured, requests reports one as a ``ConnectionError``."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3's NewConnectionError (refused, no route) subclasses its timeout error, for history's sake.
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _reach_fix(key: str) -> str:
    return (
        f"check {key}, and that this machine reaches the provider (DNS, firewall, outbound proxy: "
        "HTTPS_PROXY); IDENTITY_TIMEOUT sets how long to wait."
    )


# -- redirect URI ---------------------------------------------------------------------------------


def _is_local(host: str | None) -> bool:
    return (host or "").lower() in _LOCAL_HOSTS


def check_redirect_uri(app: Flask, settings: Settings, environ: Mapping[str, str]) -> Check:
    """The redirect URI's scheme and host, against ``SERVER_NAME``, ``TRUSTED_HOSTS`` and App Service's host."""
    uri = settings.redirect_uri
    shown = _mask_userinfo(uri)
    trusted = app.config.get("TRUSTED_HOSTS") or []
    server_name = app.config.get("SERVER_NAME")
    website = environ.get("WEBSITE_HOSTNAME")
    if "://" not in uri:
        if server_name:
            where = f"SERVER_NAME {server_name!r}"
            host = str(server_name)
        else:
            where = f"TRUSTED_HOSTS {', '.join(map(str, trusted))}"
            host = ""
        return Check(
            "redirect URI",
            OK,
            f"the path {shown}; the host comes from {where}, the scheme from each request (see the proxy check)"
            + (f"; register https://{host}{shown} with the provider." if host else "."),
        )
    parts = urlsplit(uri)
    host = parts.hostname or ""
    host_port = parts.netloc.rsplit("@", 1)[-1]
    if website and _is_local(host):
        return Check(
            "redirect URI",
            FAIL,
            f"{shown} points at this machine, but the app runs on App Service ({website}).",
            f"set IDENTITY_REDIRECT_URI to https://{website}{parts.path} and register it with the provider.",
        )
    if trusted and not host_is_trusted(host_port, list(trusted)):
        return Check(
            "redirect URI",
            FAIL,
            f"the host {host_port} of {shown} is not in TRUSTED_HOSTS: Flask answers the callback 400.",
            f"add {host!r} to TRUSTED_HOSTS, or correct IDENTITY_REDIRECT_URI.",
        )
    if parts.scheme == "http" and not _is_local(host):
        status = WARN if settings.authority.kind == "oidc" else FAIL
        return Check(
            "redirect URI",
            status,
            f"{shown} is plain http on the public host {host}: the authorization code would travel unencrypted"
            + ("." if status == WARN else ", and Microsoft's providers accept http only for localhost (AADSTS50011)."),
            f"use https://{host_port}{parts.path} (behind a TLS-terminating proxy, apply ProxyFix).",
        )
    if server_name and str(server_name).lower() != host_port.lower():
        return Check(
            "redirect URI",
            WARN,
            f"{shown} is on {host_port}, but SERVER_NAME is {server_name!r}: "
            "URLs the app builds with url_for(_external=True) name the other host.",
            "make SERVER_NAME and the redirect URI's host the same.",
        )
    note = " (http is accepted for localhost only)" if parts.scheme == "http" else ""
    return Check("redirect URI", OK, f"{shown}{note}; register exactly this with the provider.")


# -- session store --------------------------------------------------------------------------------


def _within(seconds: float, work: Callable[[], T]) -> T:
    """``work()``'s result, or :class:`TimeoutError` after ``seconds``.

    It runs in a daemon thread, so a store or provider that holds a connection
    open without answering cannot keep the command from ending.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="identity-doctor", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def describe_store(app: Flask) -> tuple[str, str]:
    """The kind of session store (``"redis"``, ``"file"``, ``"memory"``, ``"database"`` or ``"unknown"``)
    and a description with no secret in it (hosts and folders, never passwords)."""
    interface = app.session_interface
    kind = type(interface).__name__
    client = getattr(interface, "client", None)
    cache = getattr(interface, "cache", None)
    if cache is not None:
        if isinstance(cache, FileSystemCache):
            return "file", f"a file store in {os.path.abspath(cache._path)}"
        module = type(cache).__module__
        if module.startswith("cachelib.redis") or module.startswith("cachelib.memcached"):
            return "redis", f"a {type(cache).__name__} store"
        return "memory", f"a {type(cache).__name__} store in this process's memory"
    if kind.startswith("Redis") and client is not None:
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return "redis", f"Redis at {where}"
    if isinstance(interface, ServerSideSessionInterface):
        return "database", f"a {kind.removesuffix('SessionInterface') or kind} store"
    return "unknown", f"the app's own session interface {kind}"


def check_session_store(app: Flask, timeout: float) -> Check:
    """Write a test record through the app's Flask-Session interface, read it back and delete it."""
    interface = app.session_interface
    _kind, where = describe_store(app)
    if not isinstance(interface, ServerSideSessionInterface):
        return Check(
            "session store",
            WARN,
            f"{where} is not a Flask-Session interface; its round trip was not tried.",
            "check by hand that a session written by one request is read by the next.",
        )
    store_id = interface._get_store_id("identity-doctor-" + secrets.token_hex(8))
    marker = secrets.token_hex(8)

    def round_trip() -> str | None:
        with app.app_context():
            record = ServerSideSession({"identity_doctor": marker}, sid=store_id, permanent=True)
            interface._upsert_session(app.permanent_session_lifetime, record, store_id)
            try:
                read = interface._retrieve_session_data(store_id)
            finally:
                interface._delete_session(store_id)
            if not isinstance(read, Mapping) or read.get("identity_doctor") != marker:
                return "a record written could not be read back"
            if interface._retrieve_session_data(store_id) is not None:
                return "a record deleted could still be read"
            return None

    fix = _store_fix(app)
    try:
        problem = _within(timeout, round_trip)
    except TimeoutError:
        return Check("session store", FAIL, f"{where} did not answer within {timeout:g} s.", fix)
    except Exception as exc:  # any failure of any backend's client is the finding itself
        return Check("session store", FAIL, f"{where} failed the round trip ({_error_name(exc)}).", fix)
    if problem:
        return Check("session store", FAIL, f"{where}: {problem}.", fix)
    return Check("session store", OK, f"{where}: a test record was written, read back and deleted.")


def _error_name(exc: BaseException) -> str:
    """An exception's class and, for the well-known store errors, their meaning; never its text,
    which may quote a connection string."""
    name = type(exc).__name__
    meanings = {
        "OutOfMemoryError": "the store is full: maxmemory reached with no eviction",
        "ReadOnlyError": "the store is a read-only replica",
        "AuthenticationError": "the store refused the credentials",
        "ConnectionError": "nothing answers at that address",
        "PermissionError": "no permission to write there",
    }
    return f"{name}: {meanings[name]}" if name in meanings else name


def _store_fix(app: Flask) -> str:
    kind, _where = describe_store(app)
    if kind == "redis":
        return "start the store or correct SESSION_REDIS (host, port, TLS, password), and check it is not full."
    if kind == "file":
        return "make the folder writable by the app (SESSION_FILE_DIR), and check the disk is not full."
    return "check the store the app's SESSION_TYPE names is running and reachable from here."


def detect_deployment(
    environ: Mapping[str, str], *, workers: int | None = None, instances: int | None = None, cwd: str | None = None
) -> Deployment:
    """How many processes will serve the app, from the options and what the environment says.

    Read, in this order: ``--workers``; ``WEB_CONCURRENCY``; ``--workers``/``-w``
    in ``GUNICORN_CMD_ARGS``; ``workers =`` in ``gunicorn.conf.py`` in the
    current folder; App Service's ``PYTHON_ENABLE_GUNICORN_MULTIWORKERS``
    (2 x CPUs + 1). Instances: ``--instances``; App Service
    (``WEBSITE_INSTANCE_ID``, ``WEBSITE_HOSTNAME``) may run several at any time.
    """
    evidence: list[str] = []
    count: int | None = None
    if workers is not None:
        count = workers
        evidence.append(f"--workers {workers}")
    else:
        for source, found in _worker_hints(environ, cwd or os.getcwd()):
            count = found
            evidence.append(f"{source} gives {found} workers")
            break
    app_service = bool(environ.get("WEBSITE_INSTANCE_ID") or environ.get("WEBSITE_HOSTNAME"))
    if instances is not None:
        evidence.append(f"--instances {instances}")
    elif app_service:
        evidence.append("App Service (WEBSITE_INSTANCE_ID/WEBSITE_HOSTNAME): may run several instances")
    return Deployment(count or 1, instances, app_service, tuple(evidence))


def _worker_hints(environ: Mapping[str, str], cwd: str) -> Iterator[tuple[str, int]]:
    concurrency = environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdecimal() and int(concurrency) > 0:
        yield "WEB_CONCURRENCY", int(concurrency)
    args = environ.get("GUNICORN_CMD_ARGS", "")
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    for index, word in enumerate(words):
        value = None
        if word in ("-w", "--workers") and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--workers="):
            value = word.split("=", 1)[1]
        elif word.startswith("-w") and word[2:].isdecimal():
            value = word[2:]
        if value is not None and value.isdecimal() and int(value) > 0:
            yield "GUNICORN_CMD_ARGS", int(value)
    conf = os.path.join(cwd, "gunicorn.conf.py")
    if os.path.isfile(conf):
        try:
            with open(conf, encoding="utf-8") as f:
                text = f.read(100_000)
        except OSError:
            text = ""
        match = re.search(r"^workers\s*=\s*(.+?)\s*(#.*)?$", text, re.MULTILINE)
        if match:
            value = match.group(1)
            # An expression (multiprocessing.cpu_count() * 2 + 1) is taken as several.
            yield "gunicorn.conf.py", int(value) if value.isdecimal() else max(2, 2 * (os.cpu_count() or 1) + 1)
    if environ.get("PYTHON_ENABLE_GUNICORN_MULTIWORKERS", "").strip().lower() == "true":
        yield "PYTHON_ENABLE_GUNICORN_MULTIWORKERS", 2 * (os.cpu_count() or 1) + 1


def check_shared_store(app: Flask, deployment: Deployment) -> Check:
    """Whether every worker and instance the deployment is expected to run sees the same sessions."""
    kind, where = describe_store(app)
    name = "shared store"
    seen = f"({deployment.describe()})"
    redis_fix = "use a store every instance reaches: SESSION_TYPE = 'redis' with SESSION_REDIS (Azure Cache for Redis)."
    if kind in ("redis", "database"):
        return Check(name, OK, f"{where} is reached over the network, so every worker and instance shares it {seen}.")
    if kind == "unknown":
        return Check(name, WARN, f"cannot tell whether {where} is shared {seen}.", redis_fix)
    if kind == "memory":
        if deployment.several_processes:
            return Check(
                name, FAIL, f"{where} is private to each process, and more than one is expected {seen}.", redis_fix
            )
        return Check(name, WARN, f"{where}: every restart signs every user out {seen}.", redis_fix)
    folder = where.removeprefix("a file store in ")
    if (deployment.instances or 1) > 1:
        return Check(
            name,
            FAIL,
            f"{where} is on one machine, and {deployment.instances} instances are expected {seen}.",
            redis_fix,
        )
    if deployment.app_service:
        if os.path.abspath(folder).startswith("/home/"):
            return Check(
                name,
                WARN,
                f"{where}, App Service's shared /home storage: shared by instances, but slow, and its locks are "
                f"not dependable {seen}.",
                redis_fix,
            )
        return Check(
            name,
            FAIL,
            f"{where}, outside /home on App Service: each instance has its own copy, lost at every restart or "
            f"deployment, so a scaled-out app loops on sign-in {seen}.",
            redis_fix,
        )
    if deployment.workers > 1:
        return Check(
            name,
            WARN,
            f"{where}: shared by the {deployment.workers} workers only while they all run on this machine; a "
            f"second instance or container sees other sessions {seen}.",
            redis_fix,
        )
    return Check(name, OK, f"{where}, served by one process {seen}.")


# -- SECRET_KEY -----------------------------------------------------------------------------------


def _second_process_fingerprint() -> str | None:
    """Load the app in a second process, as another worker would, and get its key's fingerprint.

    ``None`` when the app cannot be loaded again from here: it was not named by
    ``--app``/``FLASK_APP`` (or found as ``app.py``/``wsgi.py``), for example under
    a test runner or a custom ``FlaskGroup``.
    """
    context = click.get_current_context(silent=True)
    info = context.find_object(ScriptInfo) if context is not None else None
    if info is None or info.create_app is not None:
        return None
    command = [sys.executable, "-m", "flask"]
    if info.app_import_path:
        command += ["--app", info.app_import_path]
    command += ["identity", "key-fingerprint"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SECOND_LOAD_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.info("Could not load the app in a second process: %s", type(exc).__name__)
        return None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_FINGERPRINT_MARK):
            return line[len(_FINGERPRINT_MARK) :].strip()
    logger.info("The second process loading the app ended with status %s and no fingerprint", done.returncode)
    return None


def check_secret_key(app: Flask, deployment: Deployment, second: Callable[[], str | None]) -> Check:
    """``SECRET_KEY`` is set, long enough, and the same in a second process loading the app.

    :param second: the key's :func:`fingerprint` in another process, or ``None``
        when that cannot be had.
    """
    name = "SECRET_KEY"
    key = app.config.get("SECRET_KEY")
    fix_stable = (
        "set SECRET_KEY from an environment variable or app setting holding a long random value "
        "(python -c 'import secrets; print(secrets.token_hex())'), the same for every worker and instance."
    )
    if not key:
        return Check(name, FAIL, "not set: pending sign-ins cannot be encrypted.", fix_stable)
    other = second()
    if other is not None and other != "-" and other != fingerprint(key):
        several = deployment.several_processes
        return Check(
            name,
            FAIL if several else WARN,
            "differs in a second process loading the app: it is made anew at each start, so a sign-in started "
            + (
                f"on one worker fails on another ({deployment.describe()})."
                if several
                else "before a restart fails after it."
            ),
            fix_stable,
        )
    short = len(key) < MIN_SECRET_KEY_LENGTH
    if other is not None and other == fingerprint(key):
        how = "the same in a second process loading the app"
    else:
        variable = _environment_variable_holding(key)
        if variable is not None:
            how = f"read from the environment variable {variable} (not compared in a second process)"
        elif deployment.several_processes:
            return Check(
                name,
                WARN,
                "set, but could not be compared in a second process (the app is not named by --app or FLASK_APP), "
                f"and more than one process is expected ({deployment.describe()}).",
                "run `flask --app <module> identity doctor` to compare, or " + fix_stable,
            )
        else:
            how = "set (not compared in a second process: run with --app to compare)"
    if short:
        return Check(
            name,
            WARN,
            f"{how}, but only {len(key)} characters long.",
            "use python -c 'import secrets; print(secrets.token_hex())'.",
        )
    return Check(name, OK, f"{how}.")


def _environment_variable_holding(key: str | bytes) -> str | None:
    text = key.decode(errors="replace") if isinstance(key, bytes) else key
    for variable, value in os.environ.items():
        if value and hmac.compare_digest(value.encode(), text.encode()):
            return variable
    return None


# -- proxy ----------------------------------------------------------------------------------------


def find_proxy_fix(app: Flask) -> Any | None:
    """werkzeug's ``ProxyFix`` among the middleware wrapping ``app.wsgi_app``, if applied."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    layer: Any = app.wsgi_app
    for _ in range(32):
        if isinstance(layer, ProxyFix):
            return layer
        inner = getattr(layer, "app", None)
        if inner is None or inner is app:
            return None
        layer = inner
    return None


def check_proxy(app: Flask, settings: Settings, environ: Mapping[str, str]) -> Check:
    """Whether the app sees https when a TLS-terminating proxy (App Service's front end) serves it."""
    name = "proxy"
    proxy_fix = find_proxy_fix(app)
    website = environ.get("WEBSITE_HOSTNAME")
    gunicorn_args = environ.get("GUNICORN_CMD_ARGS", "")
    trusted_forwarders = environ.get("FORWARDED_ALLOW_IPS", "").strip()
    fix = (
        "apply werkzeug's ProxyFix: app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1), "
        "only when the app is reached through the proxy alone."
    )
    if proxy_fix is not None:
        x_proto, x_host = getattr(proxy_fix, "x_proto", 0), getattr(proxy_fix, "x_host", 0)
        applied = f"ProxyFix is applied (x_proto={x_proto}, x_host={x_host})"
        if not x_proto:
            status = FAIL if "://" not in settings.redirect_uri else WARN
            return Check(name, status, f"{applied}, but x_proto=0: the app does not see https.", fix)
        if not website:
            return Check(
                name,
                OK,
                f"{applied}; it trusts X-Forwarded-* headers, so the app must be reachable only through the proxy.",
            )
        return Check(name, OK, f"{applied}; App Service's front end ({website}) terminates TLS.")
    https_seen = trusted_forwarders == "*" or "--certfile" in gunicorn_args or "--keyfile" in gunicorn_args
    if https_seen:
        how = "gunicorn trusts X-Forwarded-Proto (FORWARDED_ALLOW_IPS=*)" if trusted_forwarders == "*" else ""
        how = how or "gunicorn serves TLS itself (--certfile)"
        return Check(name, OK, f"no ProxyFix, but {how}.")
    bare = "://" not in settings.redirect_uri
    secure_redirect = settings.redirect_uri.startswith("https://")
    if website:
        if bare:
            return Check(
                name,
                FAIL,
                f"App Service's front end ({website}) terminates TLS and no ProxyFix is applied: the app sees http, "
                f"so the redirect URI is built as http://...{settings.redirect_uri}, which Microsoft's "
                "providers refuse (AADSTS50011).",
                fix,
            )
        return Check(
            name,
            WARN,
            f"App Service's front end ({website}) terminates TLS and no ProxyFix is applied: requests look like "
            "http to the app (request.is_secure, url_for(_external=True)).",
            fix,
        )
    if secure_redirect and not _is_local(urlsplit(settings.redirect_uri).hostname):
        return Check(
            name,
            WARN,
            "the redirect URI is https, but this app sees plain http (no ProxyFix, FORWARDED_ALLOW_IPS or "
            "TLS in gunicorn): if a proxy terminates TLS, the app cannot tell.",
            fix,
        )
    return Check(name, OK, "no proxy expected (WEBSITE_HOSTNAME unset, no ProxyFix), and none needed here.")


# -- credential -----------------------------------------------------------------------------------


def check_credential(credential: Any, now: datetime | None = None) -> Check:
    """The credential's kind; for a certificate, its expiry (a warning within 30 days, a failure once past)."""
    name = "credential"
    kind, expiry = credential_summary(credential)
    shown = kind.replace("_", " ")
    if kind == "secret":
        return Check(
            name,
            OK,
            "a client secret (value not shown). Its expiry is known only to the provider: see the app "
            "registration's Certificates & secrets.",
        )
    if kind != "certificate":
        return Check(name, OK, f"a {shown} (value not shown).")
    if expiry is None:
        return Check(
            name,
            WARN,
            "a certificate (value not shown) whose expiry could not be read here.",
            "give 'public_certificate' with 'private_key', or a PFX file and its passphrase, to have it checked.",
        )
    now = now or datetime.now(timezone.utc)
    days = (expiry - now).total_seconds() / 86400
    when = expiry.strftime("%Y-%m-%d %H:%M UTC")
    renew = "upload a new certificate to the app registration and set it in IDENTITY_CLIENT_CREDENTIAL."
    if days <= 0:
        return Check(
            name, FAIL, f"a certificate that expired on {when}: the provider refuses it, so sign-ins fail.", renew
        )
    if days <= EXPIRY_WARNING_DAYS:
        return Check(name, WARN, f"a certificate that expires on {when}, in {int(days)} days.", renew)
    return Check(name, OK, f"a certificate valid until {when} ({int(days)} days).")
