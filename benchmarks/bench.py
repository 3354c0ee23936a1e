"""Benchmark: what signing users in costs per page view, against a bare session read.

    python benchmarks/bench.py            # or: make bench
    python benchmarks/bench.py --quick    # fewer rounds, for a smoke run

Starts the local OpenID Connect provider and a throwaway Redis, builds the same
small app three ways on the same session store (a bare route reading the
server-side session, identity_flask, and the reference library ``identity``),
signs a user in to each through the provider, then drives every route
in-process at the WSGI level, interleaved, for several rounds. Runs once with
Flask-Session's cachelib file store and once with Redis, and writes the table
to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import gc
import html
import io
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, session
from werkzeug.test import EnvironBuilder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The server starters and the local provider are the test suite's (tests/servers.py, tests/idp).
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "idp"))

from localidp import CLIENT_ID, CLIENT_SECRET  # noqa: E402
from servers import LocalProvider, RedisServer, start_provider  # noqa: E402

from identity_flask import Auth  # noqa: E402
from identity_flask import session_data as ours_keys  # noqa: E402

ORIGIN = "http://localhost"
OURS_REDIRECT = f"{ORIGIN}/getAToken"
REFERENCE_REDIRECT = f"{ORIGIN}/auth/redirect"
SCOPES = ["User.Read"]
BROWSER_AGENT = "bench-browser"
WSGI = Callable[..., Any]


# --- the session stores -------------------------------------------------------------------------


class Store:
    """One session store configuration, shared by every app of a run."""

    name = ""

    def config(self, label: str) -> dict[str, Any]:
        raise NotImplementedError

    def stored_bytes(self, app: Flask, sid: str) -> int:
        raise NotImplementedError


class FileStore(Store):
    name = "file (cachelib)"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def config(self, label: str) -> dict[str, Any]:
        from cachelib.file import FileSystemCache

        return {
            "SESSION_TYPE": "cachelib",
            "SESSION_CACHELIB": FileSystemCache(str(self.directory / label), threshold=0, mode=0o600),
        }

    def stored_bytes(self, app: Flask, sid: str) -> int:
        cache = app.config["SESSION_CACHELIB"]
        return Path(cache._get_filename(app.session_interface.key_prefix + sid)).stat().st_size


class RedisStore(Store):
    name = "Redis"

    def __init__(self, url: str) -> None:
        self.url = url

    def config(self, label: str) -> dict[str, Any]:
        import redis

        return {"SESSION_TYPE": "redis", "SESSION_REDIS": redis.Redis.from_url(self.url)}

    def stored_bytes(self, app: Flask, sid: str) -> int:
        return int(app.config["SESSION_REDIS"].strlen(app.session_interface.key_prefix + sid))


# --- the apps -----------------------------------------------------------------------------------


def _routes(app: Flask, login_required: Callable[..., Any], user_key: str) -> None:
    """The same three routes for every library; only the decorator differs."""

    @app.route("/floor")
    def floor() -> str:
        user = session.get(user_key) or {}
        return f"Hello {user.get('name')}"

    @app.route("/page")
    @login_required
    def page(*, context: dict[str, Any]) -> str:
        return f"Hello {context['user'].get('name')}"

    @app.route("/api")
    @login_required(scopes=SCOPES)
    def api(*, context: dict[str, Any]) -> str:
        return f"Hello {context['user'].get('name')} {len(context['access_token'])}"


#: identity_flask turns Flask-Session's re-save of every request off (see sessions.py); the
#: reference app gets the same, so both read the session the same way on every page view.
SAME_FOR_ALL = {"SECRET_KEY": "bench-only", "SESSION_REFRESH_EACH_REQUEST": False}


def build_ours(provider: LocalProvider, store: Store) -> Flask:
    app = Flask("bench_identity_flask")
    app.config.update(**SAME_FOR_ALL, **store.config("ours"))
    auth = Auth(
        app,
        client_id=CLIENT_ID,
        client_credential=CLIENT_SECRET,
        redirect_uri=OURS_REDIRECT,
        authority=provider.entra_authority,
    )
    _routes(app, auth.login_required, ours_keys.USER_KEY)
    return app


def build_reference(provider: LocalProvider, store: Store) -> Flask:
    from identity.flask import Auth as ReferenceAuth
    from identity.web import Auth as ReferenceWebAuth

    app = Flask("bench_identity_reference")
    app.config.update(**SAME_FOR_ALL, **store.config("reference"))
    auth = ReferenceAuth(
        app,
        client_id=CLIENT_ID,
        client_credential=CLIENT_SECRET,
        redirect_uri=REFERENCE_REDIRECT,
        authority=provider.entra_authority,
    )
    _routes(app, auth.login_required, ReferenceWebAuth._USER)
    return app


# --- signing in through the provider ------------------------------------------------------------


def _browser(provider: LocalProvider) -> requests.Session:
    browser = provider.browser()
    browser.headers["User-Agent"] = BROWSER_AGENT
    return browser


def sign_in_ours(app: Flask, provider: LocalProvider, login: str) -> str:
    """Sign ``login`` in the way a browser would (the test suite's walk); return the session id."""
    client = app.test_client()
    back = provider.sign_in_to_app(client, "/api", login=login, browser=_browser(provider))
    assert back.status_code == 302 and back.location == "/api", (back.status_code, back.location)
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def sign_in_reference(app: Flask, provider: LocalProvider, login: str) -> str:
    client = app.test_client()
    page = client.get("/api")  # the reference answers 200 with a meta refresh to the provider
    found = re.search(r"URL=([^'\"]+)", page.get_data(as_text=True))
    assert page.status_code == 200 and found, page.status_code
    callback = provider.sign_in(html.unescape(found.group(1)), login=login, browser=_browser(provider))
    back = provider.back_to_app(client, callback)
    assert back.status_code == 302 and urlsplit(back.location).path == "/api", (back.status_code, back.location)
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


# --- driving the apps ---------------------------------------------------------------------------


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    _start_response.status = status  # type: ignore[attr-defined]
    return lambda data: None


def request_once(app: WSGI, environ: dict[str, Any]) -> str:
    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(b"")
    body = app(env, _start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return str(_start_response.status)  # type: ignore[attr-defined]


def environ_for(path: str, sid: str) -> dict[str, Any]:
    builder = EnvironBuilder(
        path=path, base_url=ORIGIN, headers={"Cookie": f"session={sid}", "Accept": "text/html,*/*"}
    )
    try:
        return builder.get_environ()
    finally:
        builder.close()


@dataclass
class Variant:
    label: str
    app: Flask
    path: str
    sid: str
    floor: str  # label of the floor this variant is compared with
    times: list[float] = field(default_factory=list)
    provider_requests: float = 0.0

    def run(self, count: int) -> float:
        environ = environ_for(self.path, self.sid)
        wsgi = self.app.wsgi_app
        gc.collect()
        start = time.perf_counter()
        for _ in range(count):
            status = request_once(wsgi, environ)
        elapsed = time.perf_counter() - start
        assert status.startswith("200"), f"{self.label}: {status}"
        return count / elapsed


@dataclass
class StoreResult:
    store: str
    rows: list[tuple[str, float, float, float]]  # label, req/s, ratio, provider requests per view
    session_bytes: dict[str, int]
    sign_in: dict[str, tuple[float, float, float]]  # library: (ms, app->provider, browser->provider)


def provider_calls(provider: LocalProvider) -> tuple[int, int]:
    """(requests the app made, requests the browser made) since the log was last cleared."""
    log = provider.log(clear=True)
    browser = sum(1 for entry in log if entry.get("ua") == BROWSER_AGENT)
    return len(log) - browser, browser


def measure_sign_in(
    provider: LocalProvider, app: Flask, sign_in: Callable[[Flask, LocalProvider, str], str], count: int
) -> tuple[float, float, float]:
    durations: list[float] = []
    app_calls = browser_calls = 0
    provider.log(clear=True)
    for index in range(count):
        start = time.perf_counter()
        sign_in(app, provider, f"signin{index}")
        durations.append(time.perf_counter() - start)
        made, browsed = provider_calls(provider)
        app_calls += made
        browser_calls += browsed
    return statistics.median(durations) * 1000, app_calls / count, browser_calls / count


def bench_store(provider: LocalProvider, store: Store, rounds: int, count: int, sign_ins: int) -> StoreResult:
    ours = build_ours(provider, store)
    reference = build_reference(provider, store)
    ours_sid = sign_in_ours(ours, provider, "bench-user")
    reference_sid = sign_in_reference(reference, provider, "bench-user")
    variants = [
        Variant("floor: bare route reading the session", ours, "/floor", ours_sid, ""),
        Variant("identity_flask `login_required`", ours, "/page", ours_sid, "floor: bare route reading the session"),
        Variant(
            "identity_flask `login_required(scopes=...)`, cached token",
            ours,
            "/api",
            ours_sid,
            "floor: bare route reading the session",
        ),
        Variant("floor, reference app's session", reference, "/floor", reference_sid, ""),
        Variant("identity 0.11 `login_required`", reference, "/page", reference_sid, "floor, reference app's session"),
        Variant(
            "identity 0.11 `login_required(scopes=...)`, cached token",
            reference,
            "/api",
            reference_sid,
            "floor, reference app's session",
        ),
    ]
    for variant in variants:  # warm up, and count what a page view costs at the provider
        variant.run(20)
        provider.log(clear=True)
        variant.run(count)
        made, _ = provider_calls(provider)
        variant.provider_requests = made / count
    for _ in range(rounds):
        for variant in variants:
            variant.times.append(variant.run(count))
    by_label = {v.label: v for v in variants}
    rows = []
    for variant in variants:
        floor = by_label.get(variant.floor)
        if floor is None:
            ratio = 1.0
        else:
            ratio = statistics.median(mine / base for mine, base in zip(variant.times, floor.times, strict=True))
        rows.append((variant.label, statistics.median(variant.times), ratio, variant.provider_requests))
    session_bytes = {
        "identity_flask": store.stored_bytes(ours, ours_sid),
        "identity 0.11": store.stored_bytes(reference, reference_sid),
    }
    sign_in = {
        "identity_flask": measure_sign_in(provider, ours, sign_in_ours, sign_ins),
        "identity 0.11": measure_sign_in(provider, reference, sign_in_reference, sign_ins),
    }
    return StoreResult(store.name, rows, session_bytes, sign_in)


# --- the report ---------------------------------------------------------------------------------


#: Run-to-run spread of a ratio on a quiet 2-CPU machine; smaller differences are noise.
NOISE = 0.03

TARGETS = {
    "identity_flask `login_required`": 0.9,
    "identity_flask `login_required(scopes=...)`, cached token": 0.8,
}


def report(results: Iterable[StoreResult], rounds: int, count: int) -> tuple[str, list[str]]:
    from importlib.metadata import version

    import identity
    import msal

    import identity_flask

    lines = [
        "# Benchmark results",
        "",
        f"Python {platform.python_version()}, Flask {version('flask')}, MSAL {msal.__version__}, "
        f"identity_flask {identity_flask.__version__}, identity {identity.__version__}; "
        f"{platform.machine()}, {_cpus()} CPUs. Median of {rounds} rounds of {count} requests per route, "
        "in-process at the WSGI level, one signed-in user, the local OpenID Connect provider. "
        "Ratios are to the bare route reading the same app's session (higher is better; 1.00 = no overhead).",
        "",
    ]
    missed: list[str] = []
    for result in results:
        lines += [
            f"## Session store: {result.store}",
            "",
            "| Route | req/s | ratio to floor | provider requests per view | target | vs identity 0.11 |",
            "|---|---:|---:|---:|---|---|",
        ]
        ratios = {label: ratio for label, _, ratio, _ in result.rows}
        for label, rps, ratio, calls in result.rows:
            target = TARGETS.get(label)
            verdict = versus = ""
            if target is not None:
                reference = ratios[label.replace("identity_flask", "identity 0.11")]
                ok = ratio >= target and (calls == 0 or "scopes" not in label)
                verdict = f">= {target:.1f}x" + (", 0 calls" if "scopes" in label else "")
                verdict += ": met" if ok else ": **missed**"
                if not ok:
                    missed.append(f"{result.store}: {label} at {ratio:.2f}x (target {target:.1f}x)")
                if ratio - reference > NOISE:
                    versus = f"ahead ({ratio:.2f} vs {reference:.2f})"
                elif ratio - reference >= -NOISE:
                    versus = f"on par, within noise ({ratio:.2f} vs {reference:.2f})"
                else:
                    versus = f"**behind** ({ratio:.2f} vs {reference:.2f})"
                    missed.append(f"{result.store}: {label} behind identity 0.11")
            lines.append(f"| {label} | {rps:,.0f} | {ratio:.2f} | {calls:g} | {verdict} | {versus} |")
        lines += [
            "",
            "| Library | session bytes stored per signed-in user | one full sign-in (median ms) "
            "| app -> provider requests per sign-in | browser -> provider requests per sign-in |",
            "|---|---:|---:|---:|---:|",
        ]
        for library, size in result.session_bytes.items():
            ms, made, browsed = result.sign_in[library]
            lines.append(f"| {library} | {size:,} | {ms:.0f} | {made:g} | {browsed:g} |")
        lines.append("")
    return "\n".join(lines), missed


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="rounds per route (median taken)")
    parser.add_argument("--requests", type=int, default=600, help="requests per route and round")
    parser.add_argument("--sign-ins", type=int, default=5, help="full sign-ins timed per library and store")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 requests: a smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=HERE / "results.md", help="where to write the table")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.sign_ins = 3, 100, 2

    results: list[StoreResult] = []
    with tempfile.TemporaryDirectory(prefix="identity-bench-") as tmp:
        workdir = Path(tmp)
        provider = start_provider(
            workdir / "idp",
            redirect_uris=[OURS_REDIRECT, REFERENCE_REDIRECT],
            post_logout=[f"{ORIGIN}/"],
        )
        try:
            print("session store: file (cachelib)", file=sys.stderr)
            file_store = FileStore(workdir / "sessions")
            results.append(bench_store(provider, file_store, args.rounds, args.requests, args.sign_ins))
            with RedisServer() as redis_server:
                print(f"session store: Redis on port {redis_server.port}", file=sys.stderr)
                results.append(
                    bench_store(provider, RedisStore(redis_server.url), args.rounds, args.requests, args.sign_ins)
                )
        finally:
            provider.stop()
    text, missed = report(results, args.rounds, args.requests)
    args.output.write_text(text)
    print(text)
    for line in missed:
        print("target missed:", line, file=sys.stderr)
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
