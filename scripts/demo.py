"""Run the sample app against the local OpenID Connect provider: ``make demo``.

No Azure account and no configuration: the provider runs on 127.0.0.1 with a
throw-away certificate authority, accepts any login and password, and serves
as the downstream API too (its userinfo endpoint). The sample's own web API
takes the tokens the provider issues for its API registration (scope
Todo.Read, app role Jobs.Run held by its daemon client); the demo prints the
command that calls it as that daemon. Ctrl-C stops everything.

The app reaches the provider over https, trusting that CA (MSAL speaks to an
https authority only). The browser reaches the provider's sign-in and sign-out
pages over plain http on 127.0.0.1, a second listener of the same provider, so
it shows no certificate warning: the demo moves the app's redirects to the
provider onto that listener (:class:`ProviderPagesOverHttp`).

Options: ``--port`` (default 5000, or ``DEMO_PORT``), ``--host``, and
``--workdir`` to keep the provider's certificates, configuration and log in a
folder of your choice (a temporary one, removed at exit, by default).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "idp"))
sys.path.insert(0, str(ROOT / "sample"))

from localidp import API_CLIENT_ID, CLIENT_ID, CLIENT_SECRET, DAEMON_CLIENT_ID, DAEMON_SECRET, LocalProvider  # noqa: E402


class QuietRequestHandler(WSGIRequestHandler):
    """Logs each request without its query string, which may hold an authorization code."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s" %s', self.command, path, code)


StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ProviderPagesOverHttp:
    """WSGI middleware: the app's redirects to the provider's https origin go to its
    plain-http browser listener instead (:meth:`LocalProvider.browser_url`).

    The app itself is unchanged and sees only https provider URLs; the browser never
    meets the throw-away CA it does not trust.
    """

    def __init__(self, app: WSGIApp, provider: LocalProvider) -> None:
        self.app = app
        self.provider = provider

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
        ) -> Callable[[bytes], object]:
            headers = [
                (name, self.provider.browser_url(value) if name.lower() == "location" else value)
                for name, value in headers
            ]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def sample_environ(provider: LocalProvider) -> dict[str, str]:
    """The sample's settings against ``provider``; every variable set, so no ``.env`` applies."""
    return {
        "IDENTITY_CLIENT_ID": CLIENT_ID,
        "IDENTITY_CLIENT_CREDENTIAL": CLIENT_SECRET,
        "IDENTITY_AUTHORITY": provider.entra_authority,
        "IDENTITY_REDIRECT_URI": "/getAToken",
        "API_ENDPOINT": provider.userinfo_endpoint,
        "API_SCOPES": "User.Read",
        "WEB_API_CLIENT_ID": API_CLIENT_ID,
        "SECRET_KEY": secrets.token_hex(32),
        "REDIS_URL": "",
        "BEHIND_PROXY": "false",
    }


def write_daemon_settings(provider: LocalProvider, path: Path, api_url: str) -> None:
    """The settings of ``sample/call_api_as_app.py`` against ``provider``, as a dotenv file:
    the provider's daemon client, which holds the app role the sample's API asks for."""
    settings = {
        "DAEMON_CLIENT_ID": DAEMON_CLIENT_ID,
        "DAEMON_CLIENT_CREDENTIAL": DAEMON_SECRET,
        "IDENTITY_AUTHORITY": provider.entra_authority,
        "IDENTITY_INSTANCE_DISCOVERY": "false",
        "WEB_API_CLIENT_ID": API_CLIENT_ID,
        "WEB_API_URL": api_url,
        "REQUESTS_CA_BUNDLE": str(provider.ca_bundle),
    }
    path.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "5000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workdir", type=Path, help="keep the provider's files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not port_is_free(args.host, args.port):
        another = args.port + 1
        print(f"Port {args.port} is taken. Run again with another one: make demo DEMO_PORT={another}", file=sys.stderr)
        return 1

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="identity-flask-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    origins = [f"http://127.0.0.1:{args.port}", f"http://localhost:{args.port}"]
    provider = LocalProvider(
        workdir,
        redirect_uris=[f"{origin}/getAToken" for origin in origins],
        post_logout_redirect_uris=[f"{origin}/" for origin in origins],
        browser_port=0,
    )
    server: Any = None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell that starts the demo in the background makes it ignore Ctrl-C.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        provider.start()
        # The sample trusts the provider's throw-away CA through requests' usual variable.
        os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = str(provider.ca_bundle)

        from webapp import create_app

        app = create_app({"SESSION_FILE_DIR": str(workdir / "sessions")}, environ=sample_environ(provider))
        server = make_server(
            args.host,
            args.port,
            ProviderPagesOverHttp(app, provider),
            threaded=True,
            request_handler=QuietRequestHandler,
        )
        url = f"http://{args.host}:{args.port}/"
        daemon_settings = workdir / "call-api-as-app.env"
        write_daemon_settings(provider, daemon_settings, url.rstrip("/"))
        script = os.path.relpath(ROOT / "sample" / "call_api_as_app.py")
        print(
            f"\n  The sample app is running at {url}\n"
            f"  Sign in with any login and password, e.g. alice (signed in as alice@example.test).\n"
            f"  Call its web API as an app (no user), in another terminal:\n"
            f"    {os.path.relpath(sys.executable)} {script} --env-file {daemon_settings}\n"
            f"  Local identity provider: {provider.browser_origin} (sign-in pages), "
            f"{provider.origin} (metadata and tokens)\n"
            f"  Press Ctrl-C to stop.\n",
            flush=True,
        )
        server.serve_forever()  # returns on Ctrl-C (werkzeug catches it) or SIGTERM
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:  # the provider could not start; its message says why
        print(f"The demo could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("\nStopping the sample app and the local provider.", flush=True)
        if server is not None:
            server.server_close()
        provider.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
