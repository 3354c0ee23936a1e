"""Call the sample's web API as an application, with no user: ``python call_api_as_app.py``.

A daemon (a scheduled job, a service) has no user to sign in. It gets an
app-only access token for the web API by the client credentials grant, with
MSAL, and calls ``GET /api/jobs``, which needs the app role ``Jobs.Run``: the
role must be granted to the daemon's app registration (API permissions >
Application permissions, with admin consent). The API's answer is printed;
the token never is.

Settings, from the environment or ``sample/.env`` (``--env-file`` reads
another file instead, over the environment):

- ``DAEMON_CLIENT_ID``, ``DAEMON_CLIENT_CREDENTIAL``: the daemon's app
  registration and its secret (or certificate, as JSON); by default
  ``IDENTITY_CLIENT_ID`` and ``IDENTITY_CLIENT_CREDENTIAL``, the web app's;
- ``IDENTITY_AUTHORITY``: ``https://login.microsoftonline.com/<tenant-id>``;
- ``WEB_API_CLIENT_ID`` or ``IDENTITY_APP_ID_URI``: the web API, as the web app
  reads them; the token is asked for ``<Application ID URI>/.default``;
- ``WEB_API_URL``: where the web API runs, ``http://localhost:5000`` by default.

Exit status: 0 when the API answered with success, 1 when it refused, 2 when
no token could be had or a setting is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msal
import requests
from webapp import settings

#: Where the web API runs when ``WEB_API_URL`` is unset: ``flask --app app run``.
DEFAULT_API_URL = "http://localhost:5000"
DOTENV = Path(__file__).resolve().parent / ".env"


class SettingMissing(Exception):
    """A setting the script needs is not set; the message names it."""


def app_only_token(environ: Mapping[str, str]) -> str:
    """An access token for the web API, for the daemon itself (client credentials).

    :raises SettingMissing: naming the variable to set.
    :raises RuntimeError: the identity provider refused; the message has its error.
    """
    client_id = _first(environ, "DAEMON_CLIENT_ID", "IDENTITY_CLIENT_ID")
    credential = _first(environ, "DAEMON_CLIENT_CREDENTIAL", "IDENTITY_CLIENT_CREDENTIAL")
    authority = _first(environ, "IDENTITY_AUTHORITY")
    app_id_uri = settings.web_api_app_id_uri(environ)
    if app_id_uri is None:
        raise SettingMissing("Set WEB_API_CLIENT_ID (or IDENTITY_APP_ID_URI).")
    discovery = environ.get("IDENTITY_INSTANCE_DISCOVERY", "").strip()
    daemon = msal.ConfidentialClientApplication(
        client_id,
        client_credential=settings.as_credential(credential),
        authority=authority,
        # Off for an authority that is not Microsoft's (a local provider, say): MSAL would
        # otherwise ask login.microsoftonline.com whether it knows the authority's host.
        instance_discovery=settings.as_bool("IDENTITY_INSTANCE_DISCOVERY", discovery) if discovery else None,
    )
    result: dict[str, Any] = daemon.acquire_token_for_client([f"{app_id_uri}/.default"])
    if "access_token" not in result:
        raise RuntimeError(f"No token: {result.get('error')}: {result.get('error_description')}")
    return str(result["access_token"])


def _first(environ: Mapping[str, str], *names: str) -> str:
    """The value of the first of ``names`` that is set."""
    for name in names:
        if environ.get(name):
            return environ[name]
    raise SettingMissing(f"Set {' (or '.join(names)}{')' * (len(names) - 1)}.")


def call_jobs(base_url: str, token: str, *, timeout: float = 10.0) -> requests.Response:
    """``GET <base_url>/api/jobs`` with the token."""
    return requests.get(f"{base_url}/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def _read_settings(env_file: Path | None) -> Mapping[str, str]:
    try:
        from dotenv import load_dotenv
    except ImportError:
        if env_file is not None:
            raise SettingMissing("--env-file needs python-dotenv: pip install python-dotenv") from None
        return os.environ
    if env_file is not None:
        if not env_file.is_file():
            raise SettingMissing(f"No file {env_file}.")
        load_dotenv(env_file, override=True)
    elif DOTENV.is_file():
        load_dotenv(DOTENV, override=False)
    return os.environ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-file", type=Path, help="read the settings from this file (over the environment)")
    args = parser.parse_args(argv)
    try:
        environ = _read_settings(args.env_file)
        token = app_only_token(environ)
    except (SettingMissing, RuntimeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    base_url = (environ.get("WEB_API_URL") or DEFAULT_API_URL).rstrip("/")
    try:
        response = call_jobs(base_url, token)
    except requests.RequestException as exc:
        print(f"The web API at {base_url} could not be reached ({type(exc).__name__}).", file=sys.stderr)
        return 2
    print(f"GET {base_url}/api/jobs: {response.status_code}")
    challenge = response.headers.get("WWW-Authenticate")
    if challenge:
        print(f"WWW-Authenticate: {challenge}")
    try:
        print(json.dumps(response.json(), indent=2, sort_keys=True))
    except ValueError:
        print(response.text[:2000])
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
