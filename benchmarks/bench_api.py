"""Benchmark: the CPU time ApiAuth's bearer token check costs a request, against PyJWT alone.

    python benchmarks/bench_api.py            # or: make bench-api
    python benchmarks/bench_api.py --quick    # a smoke run: 10 rounds of 50 requests
    python benchmarks/bench_api.py --strict   # exit 1 when a target is missed

Starts the local OpenID Connect provider and builds one small Flask app with
routes that answer the same text: ``/bare`` (no check at all), ``/floor``
(the token checked in the view with PyJWT alone: ``jwt.decode`` with the
signing key fetched once at start-up, the audience and ``RS256``) and ``/api``
(``@api_auth.authorization_required(expected_scopes=["Todo.Read"])``, which
also checks the issuer, the key id, the required claims and the scope).
Each is driven in-process at the WSGI level with a prebuilt environ carrying
the token, with two tokens: the provider's own for a signed-in user, and an
Entra-sized one of about 2 KB minted by the provider's ``/__mint`` with
the claims Entra puts in a user's access token.

Every figure is CPU time of this thread (``time.thread_time``) per request,
over a batch of requests of one route; within a round every route runs one
batch, in an order rotated from round to round, and the median (and minimum)
of the rounds is reported. The garbage collector runs between batches, never
inside one. What ApiAuth adds is its batch minus the PyJWT floor's batch of
the same round, and the ratio is that over the floor's batch.

Also counted, from the provider's request log: requests the provider gets per
validated request once the keys are held, and fetches of its signing keys
(``jwks_uri``) per burst of 100 tokens naming key ids it never published.

Writes ``benchmarks/api-results.md``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, request
from werkzeug.test import EnvironBuilder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The server starters and the local provider are the test suite's (tests/servers.py, tests/idp).
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "idp"))

from localidp import API_CLIENT_ID, TENANT_ID  # noqa: E402
from measure import WSGI, Samples, b64url, request_once  # noqa: E402
from servers import LocalProvider, start_provider  # noqa: E402

from identity_flask import ApiAuth  # noqa: E402

ORIGIN = "http://localhost"
API_URI = f"api://{API_CLIENT_ID}"
SCOPE = "Todo.Read"
KEYS_PATH = "/discovery/v2.0/keys"
DISCOVERY_PATH = "/.well-known/openid-configuration"

#: Length of the Entra-sized token, in characters (Entra's are 1 to 3 KB).
ENTRA_TOKEN_LENGTH = 2000
#: Tokens naming unknown key ids per burst.
BURST = 100

#: Targets.
TARGET_RATIO = 0.15  # CPU ApiAuth adds, over the PyJWT floor
TARGET_PROVIDER_REQUESTS = 0.0  # per validated request, keys held
TARGET_FETCHES_PER_BURST = 1  # jwks_uri fetches per burst of unknown key ids


# --- measuring ------------------------------------------------------------------------------------


def cpu_batch(app: WSGI, environ: dict[str, Any], count: int, answers: list[tuple[str, bytes]]) -> float:
    """CPU microseconds of this thread per request, over ``count`` requests."""
    gc.collect()
    start = time.thread_time_ns()
    for _ in range(count):
        answers.append(request_once(app, environ))
    return (time.thread_time_ns() - start) / count / 1000


def environ_for(path: str, token: str | None) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    builder = EnvironBuilder(path=path, base_url=ORIGIN, headers=headers)
    try:
        return builder.get_environ()
    finally:
        builder.close()


@dataclass
class Variant:
    """One route driven with one token, the same request in every batch."""

    label: str
    size: str
    route: str
    environ: dict[str, Any]
    expected: bytes
    cpu: Samples = field(default_factory=Samples)

    def check(self, answers: list[tuple[str, bytes]]) -> None:
        for status, body in answers:
            if not status.startswith("200") or body != self.expected:
                raise AssertionError(f"{self.label}: expected 200 {self.expected!r}, got {status} {body[:200]!r}")


def run_rounds(app: Flask, variants: list[Variant], rounds: int, count: int) -> None:
    """``rounds`` rounds; in each, one batch of every variant, the order rotated from round to round."""
    for variant in variants:  # warm up: the first request fetches the keys
        answers: list[tuple[str, bytes]] = []
        cpu_batch(app.wsgi_app, variant.environ, 5, answers)
        variant.check(answers)
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            answers = []
            variant.cpu.values.append(cpu_batch(app.wsgi_app, variant.environ, count, answers))
            variant.check(answers)


# --- the app and the tokens -----------------------------------------------------------------------


def build_app(provider: LocalProvider, floor_key: Any) -> Flask:
    """The three routes; ``floor_key`` is the provider's public key, fetched once."""
    app = Flask("bench_api")
    api_auth = ApiAuth(app, client_id=API_CLIENT_ID, authority=provider.entra_authority)

    @app.route("/bare")
    def bare() -> str:
        return "ok"

    @app.route("/floor")
    def floor() -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        jwt.decode(token, floor_key, algorithms=["RS256"], audience=API_CLIENT_ID)
        return "ok"

    @app.route("/api")
    @api_auth.authorization_required(expected_scopes=[SCOPE])
    def api(*, context: dict[str, Any]) -> str:
        return "ok"

    return app


def issuer_of(provider: LocalProvider) -> str:
    with provider.http() as http:
        document = http.get(provider.entra_authority + "/v2.0" + DISCOVERY_PATH, timeout=10).json()
    return str(document["issuer"])


def floor_key_for(provider: LocalProvider, token: str) -> Any:
    """The public key that signed ``token``, as PyJWT takes it."""
    kid = jwt.get_unverified_header(token)["kid"]
    entry = next(k for k in provider.jwks()["keys"] if k["kid"] == kid)
    return jwt.PyJWK(entry).key


def entra_sized_token(provider: LocalProvider, issuer: str, length: int = ENTRA_TOKEN_LENGTH) -> str:
    """A user's v2 access token for the API with the claims Entra gives one, padded with
    group ids to about ``length`` characters, signed by the provider (``/__mint``)."""
    now = int(time.time())
    oid = str(uuid.uuid4())
    claims: dict[str, Any] = {
        "aud": API_CLIENT_ID,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "aio": b64url(os.urandom(96)),
        "azp": str(uuid.uuid4()),
        "azpacr": "1",
        "family_name": "Bench",
        "given_name": "Benchmark",
        "ipaddr": "203.0.113.17",
        "name": "Benchmark Bench",
        "oid": oid,
        "preferred_username": "bench@contoso.example",
        "rh": "1.AXEA" + b64url(os.urandom(48)) + ".",
        "scp": SCOPE,
        "sid": str(uuid.uuid4()),
        "sub": b64url(os.urandom(32)),
        "tid": TENANT_ID,
        "uti": b64url(os.urandom(16)),
        "ver": "2.0",
        "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"],
        "xms_ftd": b64url(os.urandom(48)),
        "xms_idrel": "1 20",
        "groups": [],
    }
    while True:
        token = provider.mint(claims)
        if len(token) >= length - 40:
            return token
        claims["groups"].append(str(uuid.uuid4()))


def forged_unknown_kid(claims: dict[str, Any], key: rsa.RSAPrivateKey, n: int) -> str:
    """A token signed by a key the provider never published, naming an unknown key id."""
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": f"unknown-{n}-{uuid.uuid4().hex[:8]}"})


def provider_requests(provider: LocalProvider) -> list[dict[str, Any]]:
    """Requests the provider saw since the log was last cleared (its test helpers are not logged)."""
    return provider.log()


# --- the passes -----------------------------------------------------------------------------------


@dataclass
class Burst:
    jwks_first: int  # jwks_uri fetches during the first burst
    discovery_first: int
    jwks_again: int  # during a second burst right after, within the refetch interval
    refused: int  # 401 answers, of 2 x BURST


@dataclass
class Results:
    sizes: dict[str, int]
    variants: list[Variant]
    validated: int
    provider_seen: int
    bursts: list[Burst]
    rounds: int
    requests: int
    quick: bool
    seconds: float = 0.0
    missed: list[str] = field(default_factory=list)


def bench_bursts(provider: LocalProvider, floor_key: Any, token: str, trials: int) -> list[Burst]:
    """``trials`` fresh apps: keys held after one valid request, then two bursts of unknown key ids."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    results: list[Burst] = []
    for _ in range(trials):
        app = build_app(provider, floor_key)
        valid = environ_for("/api", token)
        status, _body = request_once(app.wsgi_app, valid)
        assert status.startswith("200"), status
        counts: list[tuple[int, int]] = []
        refused = 0
        for _burst in range(2):
            tokens = [forged_unknown_kid(claims, attacker, n) for n in range(BURST)]
            provider.log(clear=True)
            for forged in tokens:
                status, _body = request_once(app.wsgi_app, environ_for("/api", forged))
                refused += status.startswith("401")
            seen = provider_requests(provider)
            counts.append(
                (
                    sum(1 for e in seen if e["path"].endswith(KEYS_PATH)),
                    sum(1 for e in seen if e["path"].endswith(DISCOVERY_PATH)),
                )
            )
        results.append(Burst(counts[0][0], counts[0][1], counts[1][0], refused))
    return results


def run(args: argparse.Namespace, say: Callable[[str], None]) -> Results:
    with tempfile.TemporaryDirectory(prefix="identity-bench-api-") as tmp:
        provider = start_provider(Path(tmp) / "idp", redirect_uris=[f"{ORIGIN}/getAToken"], post_logout=[f"{ORIGIN}/"])
        try:
            say("tokens")
            small = provider.user_token("bench", [f"{API_URI}/{SCOPE}"])
            entra = entra_sized_token(provider, issuer_of(provider))
            tokens = {"provider's own": small, "Entra-sized": entra}
            floor_key = floor_key_for(provider, small)
            app = build_app(provider, floor_key)
            variants = [
                Variant(label, size, route, environ_for(route, token if route != "/bare" else None), b"ok")
                for size, token in tokens.items()
                for label, route in (
                    ("bare route, no check", "/bare"),
                    ("floor: PyJWT `jwt.decode`, cached key", "/floor"),
                    ("ApiAuth `authorization_required(expected_scopes=[...])`", "/api"),
                )
            ]
            for variant in variants:  # warm up, then count what the provider sees
                request_once(app.wsgi_app, variant.environ)
            provider.log(clear=True)
            gc.freeze()
            say(f"CPU per request: {args.rounds} rounds of {args.requests} requests per route and token")
            run_rounds(app, variants, args.rounds, args.requests)
            validated = sum(len(v.cpu.values) * args.requests + 5 for v in variants if v.route == "/api")
            provider_seen = len(provider_requests(provider))
            say(f"bursts of {BURST} unknown key ids")
            bursts = bench_bursts(provider, floor_key, small, args.trials)
        finally:
            provider.stop()
    sizes = {name: len(token) for name, token in tokens.items()}
    return Results(sizes, variants, validated, provider_seen, bursts, args.rounds, args.requests, args.quick)


# --- the report -----------------------------------------------------------------------------------


def _us(value: float) -> str:
    return f"{value:,.1f}"


def _ratio_samples(api: Variant, floor: Variant) -> Samples:
    return Samples([a / f - 1 for a, f in zip(api.cpu.values, floor.cpu.values, strict=True)])


def _added_samples(api: Variant, floor: Variant) -> Samples:
    return Samples([a - f for a, f in zip(api.cpu.values, floor.cpu.values, strict=True)])


def report(results: Results) -> str:
    versions = ", ".join(
        f"{name} {importlib.metadata.version(dist)}"
        for name, dist in (
            ("Flask", "flask"),
            ("PyJWT", "pyjwt"),
            ("cryptography", "cryptography"),
            ("identity_flask", "identity-flask"),
        )
    )
    lines = [
        "# Web API benchmark results",
        "",
        f"Python {platform.python_version()}, {versions}; {platform.machine()}, {os.cpu_count()} CPUs. "
        f"`python benchmarks/bench_api.py{' --quick' if results.quick else ''}`: "
        f"{results.rounds} rounds of {results.requests} requests per route and token, in-process at the "
        "WSGI level, against the local OpenID Connect provider; "
        f"{results.seconds:.0f} s in all. CPU time of the serving thread per request (`time.thread_time`), "
        "median of the rounds (± half width of its 95% confidence interval) and fastest round; what a route "
        "adds over the floor is the median of its batch minus the floor's batch of the same round, and the "
        "ratio the median of that over the floor's batch. See the docstring of `bench_api.py` for the method.",
        "",
        "## Tokens",
        "",
        "| Token | characters |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {size:,} |" for name, size in results.sizes.items()]
    lines += [
        "",
        "## CPU per request",
        "",
        "| Token | Route | µs per request (median) | fastest round | over the floor, µs | over the floor | target |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for size in results.sizes:
        rows = [v for v in results.variants if v.size == size]
        floor = next(v for v in rows if v.route == "/floor")
        for variant in rows:
            cells = [size, variant.label, f"{_us(variant.cpu.median)} ± {_us(variant.cpu.half_width())}"]
            cells.append(_us(variant.cpu.min))
            if variant.route == "/api":
                added = _added_samples(variant, floor)
                ratio = _ratio_samples(variant, floor)
                met = ratio.median <= TARGET_RATIO
                if not met:
                    results.missed.append(f"ApiAuth adds {ratio.median:.1%} over PyJWT with the {size} token")
                cells += [
                    f"{_us(added.median)} ± {_us(added.half_width())}",
                    f"{ratio.median:+.1%} (fastest rounds {variant.cpu.min / floor.cpu.min - 1:+.1%})",
                    f"<= {TARGET_RATIO:.0%}: {'met' if met else 'missed'}",
                ]
            elif variant.route == "/floor-header":
                added = _added_samples(variant, floor)
                ratio = _ratio_samples(variant, floor)
                cells += [
                    f"{_us(added.median)} ± {_us(added.half_width())}",
                    f"{ratio.median:+.1%} (fastest rounds {variant.cpu.min / floor.cpu.min - 1:+.1%})",
                    "",
                ]
            elif variant.route == "/floor":
                bare = next(v for v in rows if v.route == "/bare")
                cells += [f"PyJWT's check: {_us(_added_samples(variant, bare).median)} over the bare route", "", ""]
            else:
                cells += ["", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "ApiAuth reads a token once (splits it, decodes the header and the claims, and verifies the "
        "signature with the published key's algorithm), where `jwt.decode` (PyJWT "
        f"{importlib.metadata.version('pyjwt')}) spends more on parsing; both verify the same RSA signature, "
        "which is most of either's cost."
    )
    per_request = results.provider_seen / results.validated
    met_requests = per_request <= TARGET_PROVIDER_REQUESTS
    if not met_requests:
        results.missed.append(f"{per_request:.4f} provider requests per validated request")
    first = [b.jwks_first for b in results.bursts]
    again = [b.jwks_again for b in results.bursts]
    met_bursts = all(n == TARGET_FETCHES_PER_BURST for n in first) and all(n == 0 for n in again)
    if not met_bursts:
        results.missed.append(f"jwks_uri fetches per burst: first bursts {first}, second bursts {again}")
    refused = sum(b.refused for b in results.bursts)
    lines += [
        "",
        "## Requests to the provider",
        "",
        "| What | measured | target |",
        "|---|---:|---|",
        f"| provider requests per validated request, keys held ({results.provider_seen} over "
        f"{results.validated:,} requests to `/api`) | {per_request:g} | "
        f"{TARGET_PROVIDER_REQUESTS:g}: {'met' if met_requests else 'missed'} |",
        f"| `jwks_uri` fetches per burst of {BURST} tokens naming unknown key ids, keys held "
        f"({len(first)} fresh apps) | {', '.join(map(str, first))} | "
        f"{TARGET_FETCHES_PER_BURST}: {'met' if met_bursts else 'missed'} |",
        f"| the same, a second burst right after (within the 60 s refetch interval) | "
        f"{', '.join(map(str, again))} | 0 |",
        f"| OpenID configuration fetches per first burst | "
        f"{', '.join(str(b.discovery_first) for b in results.bursts)} | |",
        f"| bursts' tokens answered `401` | {refused:,} of {2 * BURST * len(results.bursts):,} | all |",
        "",
    ]
    if results.missed:
        lines += ["Targets missed:", ""] + [f"- {line}" for line in results.missed] + [""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="rounds (median taken)")
    parser.add_argument("--requests", type=int, default=200, help="requests per route, token and round")
    parser.add_argument("--trials", type=int, default=5, help="fresh apps each sent two bursts of unknown key ids")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 rounds of 50, 2 burst trials")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--output", type=Path, default=HERE / "api-results.md", help="where to write the tables")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.trials = 10, 50, 2

    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:4.0f} s] {text}", file=sys.stderr, flush=True)

    gc.disable()
    try:
        results = run(args, say)
    finally:
        gc.unfreeze()
        gc.enable()
    results.seconds = time.perf_counter() - started
    text = report(results)
    args.output.write_text(text)
    print(text)
    for line in results.missed:
        print("target missed:", line, file=sys.stderr)
    return 1 if results.missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
