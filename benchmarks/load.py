"""Load: 200 signed-in users against 2 gunicorn instances x 2 workers sharing one Redis.

    python benchmarks/load.py                 # or: make load
    python benchmarks/load.py --users 50 --seconds 5

Starts the local provider, a Redis and two gunicorn instances of
``tests/redisapp.py`` on loopback ports, signs every user in through the
provider (headless), then has all users request pages at once for a bounded
time: each user alternates a protected page (``/me``) and a page that needs an
access token (``/token``), and alternates instances with the same session
cookie, so every other request is served from a session another instance
wrote. Every answer is checked to name its user. Reports throughput, p50/p99
latency and errors (which must be 0) to ``benchmarks/load-results.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
# The server starters, the app and the local provider are the test suite's (tests/, tests/idp).
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "idp"))

from localidp import CLIENT_ID, CLIENT_SECRET  # noqa: E402
from servers import Gunicorn, LocalProvider, RedisServer, free_port, start_provider  # noqa: E402

#: Stop each user after this many requests, whatever the time left.
MAX_REQUESTS_PER_USER = 100_000


@dataclass
class User:
    login: str
    instance: int
    sid: str = ""
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sign_in(provider: LocalProvider, base: str, user: User) -> None:
    browser = requests.Session()
    back = provider.sign_in_to_app(browser, f"{base}/token", login=user.login)
    if back.status_code != 302:
        raise RuntimeError(f"sign-in of {user.login} failed: {back.status_code} {back.text[:200]}")
    user.sid = str(browser.cookies.get("session"))


def drive(user: User, ports: list[int], seconds: float, start: threading.Barrier) -> None:
    start.wait()
    deadline = time.monotonic() + seconds
    paths = ("/me", "/token")
    count = 0
    while time.monotonic() < deadline and count < MAX_REQUESTS_PER_USER:
        port = ports[(user.instance + count) % len(ports)]
        path = paths[count % 2]
        count += 1
        began = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path, headers={"Cookie": f"session={user.sid}", "Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
            connection.close()
        except OSError as exc:
            user.errors.append(f"{path}: {type(exc).__name__}")
            continue
        user.latencies.append(time.perf_counter() - began)
        if response.status != 200:
            user.errors.append(f"{path}: HTTP {response.status}")
        elif json.loads(body).get("sub") != user.login:
            user.errors.append(f"{path}: answered for another user")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long all users keep requesting")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument("--output", type=Path, default=HERE / "load-results.md")
    args = parser.parse_args(argv)

    ports = [free_port() for _ in range(args.instances)]
    with tempfile.TemporaryDirectory(prefix="identity-load-") as tmp:
        provider = start_provider(
            Path(tmp) / "idp",
            redirect_uris=[f"http://127.0.0.1:{p}/getAToken" for p in ports],
            post_logout=[f"http://127.0.0.1:{p}/" for p in ports],
        )
        try:
            with RedisServer() as store:
                secret = os.urandom(16).hex()
                instances = [
                    Gunicorn(
                        port,
                        {
                            "SECRET_KEY": secret,
                            "REDIS_URL": store.url,
                            "IDENTITY_CLIENT_ID": CLIENT_ID,
                            "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
                            "IDENTITY_AUTHORITY": provider.entra_authority,
                            "IDENTITY_REDIRECT_URI": f"http://127.0.0.1:{port}/getAToken",
                            "REQUESTS_CA_BUNDLE": str(provider.ca_bundle),
                        },
                        workers=args.workers,
                    )
                    for port in ports
                ]
                for instance in instances:
                    instance.start()
                try:
                    users = [User(f"load{i:03d}", i % len(ports)) for i in range(args.users)]
                    began = time.monotonic()
                    with ThreadPoolExecutor(max_workers=20) as pool:
                        list(pool.map(lambda u: sign_in(provider, instances[u.instance].url, u), users))
                    sign_in_seconds = time.monotonic() - began
                    print(f"{len(users)} users signed in in {sign_in_seconds:.1f}s", file=sys.stderr)

                    barrier = threading.Barrier(len(users) + 1)
                    threads = [
                        threading.Thread(target=drive, args=(user, ports, args.seconds, barrier), daemon=True)
                        for user in users
                    ]
                    for thread in threads:
                        thread.start()
                    barrier.wait()
                    load_began = time.monotonic()
                    for thread in threads:
                        thread.join(args.seconds + 60)
                    elapsed = time.monotonic() - load_began
                finally:
                    for instance in instances:
                        instance.stop()
        finally:
            provider.stop()

    latencies = [x for u in users for x in u.latencies]
    errors = [e for u in users for e in u.errors]
    total = len(latencies) + sum(1 for u in users for e in u.errors if "HTTP" not in e and "another" not in e)
    lines = [
        "# Load test results",
        "",
        f"{args.users} signed-in users, {args.instances} gunicorn instances x {args.workers} sync workers "
        f"sharing one Redis, the local OpenID Connect provider; {_cpus()} CPUs shared by the client, the "
        "servers, Redis and the provider. Each user alternates `/me` (login_required) and `/token` "
        "(login_required with scopes, cached token) and alternates instances with one session cookie.",
        "",
        "| users | duration (s) | requests | throughput (req/s) | p50 latency (ms) | p99 latency (ms) "
        "| errors | sign-in of all users (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.users} | {elapsed:.1f} | {total:,} | {total / elapsed:,.0f} "
        f"| {statistics.median(latencies) * 1000:.0f} | {percentile(latencies, 0.99) * 1000:.0f} "
        f"| {len(errors)} | {sign_in_seconds:.1f} |",
        "",
    ]
    if errors:
        lines += ["Errors (first 20):", "", *[f"- {e}" for e in errors[:20]], ""]
    text = "\n".join(lines)
    args.output.write_text(text)
    print(text)
    return 1 if errors else 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    sys.exit(main())
