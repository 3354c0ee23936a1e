"""``make demo`` in a real browser that checks certificates: a newcomer's first sign-in.

The demo runs as ``make demo`` starts it (``scripts/demo.py`` in its own process);
chromium trusts only the system's CAs, not the demo's throw-away one, and no
certificate error is ignored. The provider's sign-in and sign-out pages must
still come up without a warning: the demo sends the browser to them over plain
http on 127.0.0.1.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from localidp import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent


class Demo:
    """``scripts/demo.py --port <port> --workdir <workdir>`` in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--port", self.url.rsplit(":", 1)[1]]
            + ["--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_until_running(self, timeout: float = 30) -> None:
        """Read the demo's output until it says where it is running."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"the demo did not start in {timeout} s: {''.join(self.output)}")
            if line is None:
                pytest.fail(f"the demo exited with {self.process.wait()}: {''.join(self.output)}")
            self.output.append(line)
            if f"running at {self.url}/" in line:
                return

    @property
    def provider_config(self) -> dict[str, Any]:
        config: dict[str, Any] = json.loads((self.workdir / "idp-config.json").read_text())
        return config

    def interrupt(self, timeout: float = 20) -> int:
        """Ctrl-C: the exit status, once the demo has stopped."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.output.append(line)
        return code

    def close(self) -> None:
        """Kill the demo if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path)
    yield running
    running.close()


@pytest.fixture
def checking_page(browser: Any) -> Iterator[Any]:
    """A fresh browser context that checks certificates (no ignore_https_errors)."""
    context = browser.new_context()
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def test_demo_sign_in_and_out_in_a_browser_with_no_certificate_warning(demo: Demo, checking_page: Any) -> None:
    from playwright.sync_api import Error as PlaywrightError

    page = checking_page
    demo.wait_until_running()
    config = demo.provider_config
    pages_origin = f"http://127.0.0.1:{config['browserPort']}"
    seen: list[str] = []  # every URL this page requests
    page.on("request", lambda request: seen.append(request.url))

    # Certificates are checked: the provider's https origin is refused.
    probe = page.context.new_page()
    with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
        probe.goto(f"https://127.0.0.1:{config['port']}/__health")
    probe.close()

    page.goto(demo.url + "/")
    assert page.is_visible("#signed-out")
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(pages_origin) + r"/[^?]+/interaction/[^/?]+$"))
    assert page.title() == "Sign-in"
    assert "Any login and password work, e.g. alice" in page.inner_text("body")
    assert "DEBUG" not in page.content()
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_url(demo.url + "/")
    assert page.inner_text("#name") == "Alice"
    assert page.inner_text("#username") == "alice@example.test"

    page.click("#call-api")  # the app's own calls to the provider go over https
    page.wait_for_url(demo.url + "/call-api")
    assert page.inner_text("#status") == "200"

    page.click("#sign-out")
    page.wait_for_url(demo.url + "/")
    assert page.is_visible("#signed-out")
    provider_log = requests.get(pages_origin + "/__log", timeout=5).json()
    assert any(entry["path"].endswith("/oauth2/v2.0/logout") for entry in provider_log), "never signed out there"

    assert [url for url in seen if url.startswith(pages_origin)], "the browser never visited the provider"
    assert not [url for url in seen if not url.startswith("http://127.0.0.1:")], "left plain http on loopback"

    assert demo.interrupt() == 0, "".join(demo.output)
    assert "Stopping the sample app and the local provider." in "".join(demo.output)
