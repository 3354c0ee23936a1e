"""No secret reaches a log line: every logger at DEBUG through sign-in, API calls, refresh and logout.

The values looked for are the real ones of the run: the client secret, the
authorization code from the callback URL, the PKCE verifier from the pending
sign-in in the session, and every access, id and refresh token the session's
token cache held along the way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import APP_PORT, LiveServer, entra_settings, stored_session
from flask import Flask
from localidp import CLIENT_SECRET, SHORT_CLIENT_ID, LocalProvider, query_of
from testapp import create_app

from identity_flask import RedactSecrets, pending
from identity_flask.client import TokenCache
from identity_flask.session_data import CACHE_KEY

MSAL_CACHE_LOGGER = "msal.token_cache"
LOGGERS = ("", "identity_flask", "msal", "urllib3", "werkzeug", "flask_session", "requests")


def stored(app: Flask, browser: requests.Session) -> dict[str, Any]:
    data = stored_session(app, str(browser.cookies.get("session")))
    assert data is not None
    return data


def tokens_in(data: dict[str, Any]) -> set[str]:
    cache = data[CACHE_KEY]
    return {
        entry["secret"]
        for kind in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(kind, {}).values()
        if entry.get("secret")
    }


def record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Run:
    #: Log records emitted by the app (the server's threads), not by the test's own browser.
    records: list[logging.LogRecord]
    secrets: dict[str, str]

    def leaks(self, loggers: Callable[[str], bool]) -> list[str]:
        return [
            f"{what} in {record.name}: {record_text(record)[:300]}"
            for record in self.records
            if loggers(record.name)
            for what, value in self.secrets.items()
            if value and value in record_text(record)
        ]


@pytest.fixture(scope="module")
def run(provider: LocalProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One sign-in, two API calls that refresh, and a logout, with every logger at DEBUG."""
    provider.clear_faults()
    provider.log(clear=True)
    settings = entra_settings(provider, client_id=SHORT_CLIENT_ID)  # 5-second tokens: every call refreshes
    app = create_app(str(tmp_path_factory.mktemp("secrets-sessions")), **settings)
    collect = Collect()
    # The raw lines, as they are before any app (the sample, in another test) filters its request log.
    werkzeug_filters = logging.getLogger("werkzeug").filters[:]
    logging.getLogger("werkzeug").filters.clear()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(collect)
    # Every token the provider issued, as MSAL hands it to the token cache (the session
    # keeps no id token, so it is seen here).
    issued: set[str] = set()
    real_add = TokenCache.add

    def spy(self: TokenCache, event: dict[str, Any], now: float | None = None) -> Any:
        response = event.get("response") or {}
        issued.update(v for k in ("access_token", "refresh_token", "id_token") if isinstance(v := response.get(k), str))
        return real_add(self, event, now)

    TokenCache.add = spy  # type: ignore[method-assign]
    try:
        secrets = journey(app, provider)
        assert any(s.count(".") == 2 for s in issued), "no id token seen"
        for index, token in enumerate(sorted(issued - set(secrets.values()))):
            secrets[f"issued token #{index}"] = token
    finally:
        TokenCache.add = real_add  # type: ignore[method-assign]
        logging.getLogger().removeHandler(collect)
        logging.getLogger("werkzeug").filters[:] = werkzeug_filters
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    test_thread = threading.get_ident()
    yield Run([r for r in collect.records if r.thread != test_thread], secrets)


def journey(app: Flask, idp: LocalProvider) -> dict[str, str]:
    secrets: dict[str, str] = {"client secret": CLIENT_SECRET}
    browser = requests.Session()
    with LiveServer(app, APP_PORT) as server:
        # Sign-in: to the provider, and back with a code.
        auth_uri = idp.auth_uri_from(browser, f"{server.url}/token")
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items() if k.startswith(pending.COOKIE_PREFIX))
        with app.test_request_context(headers={"Cookie": cookie}):
            (started,) = app.extensions["identity"].pending.entries().values()
        secrets["PKCE code verifier"] = started["flow"]["code_verifier"]
        callback = idp.sign_in(auth_uri, login="alice")
        secrets["authorization code"] = query_of(callback)["code"]
        back = idp.back_to_app(browser, callback)
        assert back.status_code == 302 and back.headers["Location"] == "/token"
        first = browser.get(server.url + "/token", timeout=10)
        assert first.status_code == 200 and first.json()["sub"] == "alice"
        seen = tokens_in(stored(app, browser))

        # API calls, each of which refreshes the short-lived access token.
        for _ in range(2):
            api = browser.get(f"{server.url}/token", timeout=10)
            assert api.status_code == 200
            seen |= tokens_in(stored(app, browser))
            seen.add(api.json()["access_token"])
        refreshes = [e for e in idp.log() if e["method"] == "POST" and e["path"].endswith("/token")]
        assert len(refreshes) >= 3  # the code redemption and at least two refreshes

        # Logout.
        out = browser.get(
            f"{server.url}/logout", headers={"Sec-Fetch-Site": "same-origin"}, allow_redirects=False, timeout=10
        )
        assert out.status_code == 302
    assert len(seen) >= 4  # the refresh token and three access tokens at least (no id token is stored)
    for index, token in enumerate(sorted(seen)):
        secrets[f"token #{index}"] = token
    return secrets


def test_the_capture_sees_every_library(run: Run) -> None:
    names = {r.name for r in run.records}
    assert any(n.startswith("identity_flask") for n in names)
    assert any(n.startswith("msal") for n in names), "MSAL's debug logging was not captured"
    assert any(n.startswith("urllib3") for n in names), "urllib3's debug logging was not captured"
    assert "werkzeug" in names, "werkzeug's request log was not captured"


def test_no_secret_in_any_log_line_of_the_extension_and_its_http_stack(run: Run) -> None:
    leaks = run.leaks(lambda name: name not in (MSAL_CACHE_LOGGER, "werkzeug"))
    assert not leaks, "\n".join(leaks)


def test_no_code_or_verifier_in_msal_debug_log(run: Run) -> None:
    leaks = run.leaks(lambda name: name == MSAL_CACHE_LOGGER)
    assert not leaks, "\n".join(leaks)


def test_the_request_log_needs_the_offered_filter_and_it_is_enough(run: Run) -> None:
    """werkzeug's request log belongs to the app: it prints the callback's code until the
    app attaches :class:`~identity_flask.RedactSecrets` to its handlers, as the sample does."""
    raw = run.leaks(lambda name: name == "werkzeug")
    assert any("authorization code" in leak for leak in raw), "the extension filtered a log it does not own"
    redact = RedactSecrets()
    filtered = []
    for record in run.records:
        if record.name == "werkzeug":
            copy = logging.makeLogRecord(record.__dict__)
            redact.filter(copy)
            filtered.append(copy)
    leaks = Run(filtered, run.secrets).leaks(lambda name: True)
    assert not leaks, "\n".join(leaks)


def test_initialising_the_extension_changes_no_logger(tmp_path: Path, provider: LocalProvider) -> None:
    def filters() -> dict[str, list[logging.Filter | Callable[..., Any]]]:
        loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
        return {lg.name: list(lg.filters) + [f for h in lg.handlers for f in h.filters] for lg in loggers}

    before = filters()
    create_app(str(tmp_path / "sessions"), **entra_settings(provider))
    assert filters() == before
