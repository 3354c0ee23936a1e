"""Server processes the tests (and the benchmarks) run against: a throwaway Redis,
gunicorn, and the local provider with ``requests`` trusting it.

Everything listens on 127.0.0.1 only, on free ports, and stops on leaving ``with``.
The benchmarks import this module (and :mod:`localidp`) with ``tests/`` on ``sys.path``.
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

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE / "idp") not in sys.path:
    sys.path.insert(0, str(HERE / "idp"))

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
    """Start the local provider and make ``requests`` (and MSAL) in this process trust its certificate."""
    provider = LocalProvider(workdir, redirect_uris=redirect_uris, post_logout_redirect_uris=post_logout)
    provider.start()
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = str(provider.ca_bundle)
    return provider


class Gunicorn:
    """``gunicorn`` serving a WSGI app on a loopback port, ready once ``/`` answers.

    :param env: environment variables over this process's: the app's settings.
    :param app: the ``module:variable`` to serve; by default :mod:`redisapp`, the
        Redis-backed app of the isolation test and the load benchmark.
    :param chdir: the folder the app's module is in.
    :param log: a file for gunicorn's output; by default it goes to this process's.
    """

    def __init__(
        self,
        port: int,
        env: dict[str, str],
        *,
        app: str = "redisapp:app",
        chdir: Path = HERE,
        workers: int = 2,
        threads: int = 1,
        log: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.app = app
        self.chdir = chdir
        self.workers = workers
        self.threads = threads
        self.log = log
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
            "--chdir",
            str(self.chdir),
            "--pythonpath",
            str(ROOT),
            self.app,
        ]
        output = open(self.log, "wb") if self.log is not None else None  # noqa: SIM115 - closed once handed over
        try:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                cwd=self.chdir,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()
        try:
            wait_until_ready(
                self.process,
                lambda: requests.get(self.url + "/", timeout=2).ok,
                f"gunicorn serving {self.app}",
                timeout=timeout,
                detail=self.log.read_text if self.log is not None else None,
            )
        except RuntimeError:
            self.stop()
            raise
        return self

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
