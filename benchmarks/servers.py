"""Processes the benchmarks run against: the local provider and a throwaway Redis.

Everything listens on 127.0.0.1 only, on free ports, and is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "idp"))

from localidp import LocalProvider, free_port, stop_process, wait_until_ready  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError("redis-server is missing: run `make install` (apt-get install redis-server).")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_ready(self.process, self._pong, "redis-server", timeout=timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _pong(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def start_provider(workdir: Path, redirect_uris: Iterable[str], post_logout: Iterable[str]) -> LocalProvider:
    """Start the local provider and make ``requests`` (and MSAL) trust its certificate."""
    provider = LocalProvider(workdir, redirect_uris=redirect_uris, post_logout_redirect_uris=post_logout)
    provider.start()
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = str(provider.ca_bundle)
    return provider


class Gunicorn:
    """``gunicorn`` serving ``benchmarks/loadapp.py`` on a loopback port.

    :param env: the app's settings (``IDENTITY_*``, ``REDIS_URL``, ``SECRET_KEY``).
    """

    def __init__(self, port: int, env: dict[str, str], *, workers: int = 2, threads: int = 1) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Gunicorn:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--timeout",
            "60",
            "--log-level",
            "warning",
            "--pythonpath",
            f"{ROOT / 'benchmarks'},{ROOT}",
            "loadapp:app",
        ]
        self.process = subprocess.Popen(command, env={**os.environ, **self.env}, cwd=ROOT, start_new_session=True)
        try:
            wait_until_ready(self.process, self._listening, "gunicorn", timeout=timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def _listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the arbiter stops its workers
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


__all__ = ["Gunicorn", "LocalProvider", "RedisServer", "free_port", "start_provider"]
