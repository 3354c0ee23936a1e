"""Settings: read from the constructor, else ``app.config["IDENTITY_*"]``, else a default.

Everything here runs once, in :meth:`identity_flask.Auth.init_app` (a view's
scopes, when :meth:`~identity_flask.Auth.login_required` decorates it), and fails
fast with a message that names the setting to fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from . import credentials, sign_in_options
from .errors import ConfigurationError

#: Hosts of Microsoft's sign-in service. For these MSAL validates the authority
#: through instance discovery; every other host is used as given.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "login.microsoftonline.us",
        "login-us.microsoftonline.com",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

RESPONSE_MODES = ("query", "form_post")

#: Values of ``prompt`` the provider understands.
PROMPTS = sign_in_options.PROMPTS

#: Microsoft Graph in the global cloud; national clouds have their own (``https://graph.microsoft.us``, ...).
GRAPH_ENDPOINT = "https://graph.microsoft.com"

#: Scopes MSAL always asks for itself and refuses to be given.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})

#: Entra ID authority paths that let users of any organization sign in.
MULTI_TENANT_PATHS = frozenset({"common", "organizations"})

#: Settings taken from the constructor or ``IDENTITY_<NAME>``, with their defaults.
DEFAULTS: dict[str, Any] = {
    "client_id": None,
    "client_credential": None,
    "client_certificate_path": None,
    "client_certificate_passphrase": None,
    "client_certificate_send_x5c": False,
    "managed_identity": None,
    "client_assertion_file": None,
    "redirect_uri": None,
    "authority": None,
    "oidc_authority": None,
    "b2c_tenant_name": None,
    "b2c_signup_signin_user_flow": None,
    "b2c_edit_profile_user_flow": None,
    "b2c_reset_password_user_flow": None,
    "b2c_authority_host": None,
    "post_logout_view": None,
    "prompt": None,
    "scopes": (),
    "response_mode": "query",
    "timeout": 10.0,
    "sign_in_timeout": 600,
    "max_pending_sign_ins": 8,
    "instance_discovery": None,
    "store_outage_page": True,
    "allowed_tenants": (),
    "domain_hint": None,
    "graph_endpoint": GRAPH_ENDPOINT,
    "groups_cache_seconds": 600,
}


@dataclasses.dataclass(frozen=True)
class Authority:
    """Where users sign in: an MSAL ``authority`` or an ``oidc_authority``."""

    #: ``"entra"``, ``"b2c"`` or ``"oidc"``.
    kind: str
    #: The URL handed to MSAL.
    url: str

    def msal_kwargs(self, instance_discovery: bool | None) -> dict[str, Any]:
        """The keyword arguments that point MSAL at this authority."""
        if self.kind == "oidc":
            return {"oidc_authority": self.url}
        if instance_discovery is None:
            instance_discovery = False if self.kind == "b2c" else None
            if urlsplit(self.url).hostname not in MICROSOFT_LOGIN_HOSTS:
                instance_discovery = False
        return {"authority": self.url, "instance_discovery": instance_discovery}

    @property
    def multi_tenant(self) -> bool:
        """Whether users of any organization can sign in (``/common``, ``/organizations``)."""
        if self.kind == "b2c":
            return False
        first = urlsplit(self.url).path.strip("/").split("/")[0]
        return first.lower() in MULTI_TENANT_PATHS

    @property
    def logout_endpoint(self) -> str | None:
        """Entra ID, External ID and B2C sign users out at a well-known path."""
        if self.kind == "oidc":
            return None
        return self.url.rstrip("/") + "/oauth2/v2.0/logout"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings of one app."""

    client_id: str
    client_credential: Any
    redirect_uri: str
    #: The path the callback is served at, taken from ``redirect_uri``.
    redirect_path: str
    #: The sign-in authority; for B2C the sign-up-or-sign-in user flow.
    authority: Authority
    #: B2C only: the edit-profile and reset-password user flows.
    edit_profile_authority: Authority | None
    reset_password_authority: Authority | None
    post_logout_view: str | Callable[..., Any] | None
    prompt: str | None
    scopes: tuple[str, ...]
    response_mode: str
    timeout: float
    sign_in_timeout: int
    max_pending_sign_ins: int
    instance_discovery: bool | None
    #: Whether ``init_app`` registers the app's 500 handler that answers store outages with 503.
    store_outage_page: bool
    #: Lower-case tenant ids whose users may sign in; empty lets every tenant in.
    allowed_tenants: tuple[str, ...] = ()
    #: The ``domain_hint`` sent with each sign-in (an organization's domain), if any.
    domain_hint: str | None = None
    #: Microsoft Graph's root, where group memberships are read when a token has too many to list.
    graph_endpoint: str = GRAPH_ENDPOINT
    #: Seconds a user's group memberships read from Graph are kept in their session.
    groups_cache_seconds: float = 600.0
    #: The certificate file read into ``client_credential``, if the credential is one (its passphrase is not kept).
    client_certificate_path: str | None = None
    #: Whether the certificate is sent with each client assertion (``x5c``).
    client_certificate_send_x5c: bool = False
    #: ``"system"`` or a user-assigned managed identity's client id, if the credential is one.
    managed_identity: str | None = None
    #: The file a client assertion is read from, if the credential is one.
    client_assertion_file: str | None = None

    @property
    def routes_prefix(self) -> str:
        """Login and logout live beside the callback, as in ``identity.flask``."""
        parent = posixpath.dirname(self.redirect_path)
        return "" if parent == "/" else parent


#: Settings of :class:`~identity_flask.ApiAuth`, with their defaults. The ones it
#: shares with :class:`~identity_flask.Auth` mean the same and read the same keys.
API_DEFAULTS: dict[str, Any] = {
    **{
        name: DEFAULTS[name]
        for name in (
            "client_id",
            "client_credential",
            "client_certificate_path",
            "client_certificate_passphrase",
            "client_certificate_send_x5c",
            "managed_identity",
            "client_assertion_file",
            "authority",
            "oidc_authority",
            "b2c_tenant_name",
            "b2c_signup_signin_user_flow",
            "b2c_authority_host",
            "instance_discovery",
            "timeout",
            "allowed_tenants",
        )
    },
    "app_id_uri": None,
    "allowed_client_apps": (),
    "clock_leeway": 60,
}


def _pick(
    name: str, given: Mapping[str, Any], config: Mapping[str, Any], defaults: Mapping[str, Any] = DEFAULTS
) -> Any:
    value = given.get(name)
    if value is None:
        value = config.get("IDENTITY_" + name.upper())
    if value is None or value == "":
        value = defaults[name]
    return value


def _key(name: str) -> str:
    return f"'{name}' (IDENTITY_{name.upper()})"


def _check_url(name: str, url: str, *, need_path: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigurationError(
            f"{_key(name)} must be an https:// URL, got {url!r}. Identity providers are only reached over TLS."
        )
    if need_path and parts.path.strip("/") == "":
        raise ConfigurationError(
            f"{_key(name)} must name a tenant in its path, for example "
            f"'https://login.microsoftonline.com/<tenant-id>', got {url!r}."
        )
    return url.rstrip("/")


def _authorities(
    values: Mapping[str, Any],
) -> tuple[Authority, Authority | None, Authority | None]:
    authority = values["authority"]
    oidc_authority = values["oidc_authority"]
    tenant = values["b2c_tenant_name"]
    sign_in_flow = values["b2c_signup_signin_user_flow"]
    b2c = bool(tenant or sign_in_flow)
    chosen = [name for name, on in (("authority", authority), ("oidc_authority", oidc_authority), ("b2c", b2c)) if on]
    if not chosen:
        raise ConfigurationError(
            "No authority is configured. Set one of: 'authority' "
            "(IDENTITY_AUTHORITY, e.g. https://login.microsoftonline.com/<tenant-id>), "
            "'oidc_authority' (IDENTITY_OIDC_AUTHORITY), or the B2C pair "
            "'b2c_tenant_name' and 'b2c_signup_signin_user_flow'."
        )
    if len(chosen) > 1:
        raise ConfigurationError(
            "Only one kind of authority may be configured, but these are all set: "
            + ", ".join(chosen)
            + ". Keep 'authority', 'oidc_authority' or the B2C settings, not several."
        )
    if authority:
        url = _check_url("authority", authority, need_path=True)
        host = urlsplit(url).hostname or ""
        kind = "b2c" if host.endswith(".b2clogin.com") else "entra"
        return Authority(kind, url), None, None
    if oidc_authority:
        return Authority("oidc", _check_url("oidc_authority", oidc_authority, need_path=False)), None, None
    if not (tenant and sign_in_flow):
        missing = "b2c_signup_signin_user_flow" if tenant else "b2c_tenant_name"
        raise ConfigurationError(f"B2C needs both the tenant name and the sign-in user flow: set {_key(missing)}.")
    host = values["b2c_authority_host"] or f"https://{tenant}.b2clogin.com"
    if "://" not in host:
        host = "https://" + host
    host = _check_url("b2c_authority_host", host, need_path=False)

    def flow(name: str | None) -> Authority | None:
        return Authority("b2c", f"{host}/{tenant}.onmicrosoft.com/{name}") if name else None

    sign_in = flow(sign_in_flow)
    assert sign_in is not None
    return sign_in, flow(values["b2c_edit_profile_user_flow"]), flow(values["b2c_reset_password_user_flow"])


def _check_certificate(credential: Mapping[str, Any]) -> None:
    """A certificate dict must have one of the shapes MSAL takes, with a readable key.

    Values are secrets: messages name keys and paths only.
    """
    name = _key("client_credential")
    if "client_assertion" in credential:
        if not credential["client_assertion"]:
            raise ConfigurationError(f"{name}: 'client_assertion' is empty.")
        return
    if "private_key_pfx_path" in credential:
        path = credential["private_key_pfx_path"]
        if not isinstance(path, str) or not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigurationError(f"{name}: 'private_key_pfx_path' {path!r} is not a readable file.")
        return
    if "private_key" in credential:
        key = credential["private_key"]
        if not isinstance(key, (str, bytes)) or b"-----BEGIN" not in (key.encode() if isinstance(key, str) else key):
            raise ConfigurationError(f"{name}: 'private_key' must be a PEM private key ('-----BEGIN ...').")
        if not credential.get("thumbprint") and not credential.get("public_certificate"):
            raise ConfigurationError(f"{name}: a 'private_key' needs its certificate's 'thumbprint'.")
        return
    raise ConfigurationError(
        f"{name} as a dict must hold 'private_key' and 'thumbprint', 'private_key_pfx_path' "
        f"(and 'passphrase'), or 'client_assertion'; it has {sorted(credential)}."
    )


def _as_optional_bool(name: str, value: Any) -> bool | None:
    """Booleans may arrive as strings from environment variables."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{_key(name)} must be true or false, got {value!r}.")


#: The largest value each number setting takes: past these, a value is a mistake (a timeout
#: in milliseconds, say) that would fail later, on a request, far from the setting.
MOST = {
    "timeout": 600,  # seconds: no front end waits longer for a page
    "sign_in_timeout": 86_400,  # seconds: a day at the provider's sign-in page
    "max_pending_sign_ins": 32,  # no more sign-in cookies are read (pending.MAX_COOKIES_READ)
    "groups_cache_seconds": 86_400,
}


def _as_seconds(name: str, value: Any) -> float:
    """A number of seconds greater than 0 and at most :data:`MOST`; strings come from environment variables."""
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 < seconds <= MOST[name]):
        raise ConfigurationError(
            f"{_key(name)} must be a number of seconds greater than 0 and at most {MOST[name]}, got {value!r}."
        )
    return seconds


def _as_count(name: str, value: Any) -> int:
    """A whole number greater than 0 and at most :data:`MOST`; strings come from environment variables."""
    count = 0
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str) and value.strip().isdecimal():
        count = int(value)
    if not 0 < count <= MOST[name]:
        raise ConfigurationError(
            f"{_key(name)} must be a whole number greater than 0 and at most {MOST[name]}, got {value!r}."
        )
    return count


def _as_words(name: str, value: Any) -> tuple[str, ...]:
    """A list or tuple of strings, or one string separated by spaces or commas."""
    if isinstance(value, str):
        return tuple(value.replace(",", " ").split())
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(value)
    raise ConfigurationError(
        f"{_key(name)} must be a list of strings, or one string separated by spaces or commas, got {value!r}."
    )


def check_scopes(scopes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Refuse the scopes MSAL asks for itself, which it would refuse at every sign-in.

    :param where: how the scopes were given, for the message.
    :raises ConfigurationError: naming the reserved scopes found.
    """
    reserved = sorted({s for s in scopes if s.lower() in RESERVED_SCOPES})
    if reserved:
        raise ConfigurationError(
            f"{where} may not contain {', '.join(reserved)}: openid, profile and offline_access are "
            "asked for at every sign-in already. Remove them; the id token's claims hold the profile."
        )
    return scopes


def view_scopes(scopes: Iterable[str] | None) -> tuple[str, ...]:
    """The scopes a protected view asks for, checked when it is decorated.

    :raises ConfigurationError: a string instead of a list, or a reserved scope.
    """
    where = "login_required(scopes=...)"
    if scopes is None:
        return ()
    if isinstance(scopes, str):
        raise ConfigurationError(
            f"{where} takes a list of scopes, got the string {scopes!r}: write scopes=[{scopes!r}]."
        )
    wanted = tuple(scopes)
    if not all(isinstance(s, str) and s.strip() for s in wanted):
        raise ConfigurationError(f"{where} takes a list of scopes (strings), got {wanted!r}.")
    return check_scopes(wanted, where)


def _as_tenants(value: Any) -> tuple[str, ...]:
    """Tenant ids as the ``tid`` claim spells them: lower-case GUIDs."""
    tenants = []
    for item in _as_words("allowed_tenants", value):
        try:
            tenants.append(str(uuid.UUID(item.strip())))
        except ValueError:
            raise ConfigurationError(
                f"{_key('allowed_tenants')} must hold tenant ids (GUIDs, as in the 'tid' claim; see "
                f"Microsoft Entra ID > Overview > Tenant ID), got {item!r}."
            ) from None
    return tuple(tenants)


def _check_credential(credential: Any) -> None:
    """A client secret, a certificate dict as MSAL takes it, a client assertion callable (or nothing)."""
    if credential is not None and not isinstance(credential, (str, Mapping)) and not callable(credential):
        # The value is a secret: name its type only.
        raise ConfigurationError(
            f"{_key('client_credential')} must be a client secret (a string), a certificate dict as MSAL "
            f"takes it, or a callable returning a client assertion, got a {type(credential).__name__}."
        )
    if isinstance(credential, Mapping):
        _check_certificate(credential)


#: The settings that each configure one kind of client credential.
CREDENTIAL_SETTINGS = ("client_credential", "client_certificate_path", "managed_identity", "client_assertion_file")


def _credential(values: Mapping[str, Any], *, timeout: float) -> Any:
    """The one client credential configured, resolved (see :mod:`identity_flask.credentials`), or ``None``.

    :raises ConfigurationError: several kinds at once, a certificate setting without
        its file, or a credential that is unusable.
    """
    _check_credential(values["client_credential"])
    chosen = [name for name in CREDENTIAL_SETTINGS if values[name] not in (None, "")]
    if len(chosen) > 1:
        raise ConfigurationError(
            "Only one kind of client credential may be configured, but these are all set: "
            + ", ".join(_key(name) for name in chosen)
            + ". Keep one: a client secret (or certificate dict, or assertion callable) in 'client_credential', "
            "a certificate file in 'client_certificate_path', a managed identity in 'managed_identity', or a "
            "token file in 'client_assertion_file'."
        )
    path = values["client_certificate_path"]
    send_x5c = bool(_as_optional_bool("client_certificate_send_x5c", values["client_certificate_send_x5c"]))
    if not path:
        for name, on in (
            ("client_certificate_passphrase", values["client_certificate_passphrase"] not in (None, "")),
            ("client_certificate_send_x5c", send_x5c),
        ):
            if on:
                raise ConfigurationError(
                    f"{_key(name)} is set, but no certificate file is: it applies to the file in "
                    f"{_key('client_certificate_path')}. Set that, or remove {_key(name)}."
                )
        if values["managed_identity"] not in (None, ""):
            return credentials.managed_identity(
                values["managed_identity"], client_id=str(values["client_id"]), timeout=timeout
            )
        if values["client_assertion_file"] not in (None, ""):
            return credentials.assertion_file_setting(values["client_assertion_file"])
        credential = values["client_credential"]
        if callable(credential) and not isinstance(credential, Mapping):
            return credentials.ClientAssertion(credential)
        return credential or None
    return credentials.certificate(path, passphrase=values["client_certificate_passphrase"] or None, send_x5c=send_x5c)


def _check_types(values: Mapping[str, Any]) -> None:
    for name in (
        "client_id",
        "redirect_uri",
        "authority",
        "oidc_authority",
        "b2c_tenant_name",
        "b2c_signup_signin_user_flow",
        "b2c_edit_profile_user_flow",
        "b2c_reset_password_user_flow",
        "b2c_authority_host",
        "prompt",
        "response_mode",
        "domain_hint",
        "graph_endpoint",
    ):
        value = values[name]
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{_key(name)} must be a string, got {value!r}.")
    view = values["post_logout_view"]
    if view is not None and not (isinstance(view, str) or callable(view)):
        raise ConfigurationError(
            f"{_key('post_logout_view')} must be a view function or an endpoint name, got {view!r}."
        )
    prompt = values["prompt"]
    if prompt is not None and prompt not in PROMPTS:
        raise ConfigurationError(f"{_key('prompt')} must be one of {', '.join(PROMPTS)}, got {prompt!r}.")


def resolve(app: Flask, given: Mapping[str, Any]) -> Settings:
    """Resolve and validate the settings of ``app``.

    :param given: the arguments passed to :class:`~identity_flask.Auth`.
    :raises ConfigurationError: with the name of the setting to fix.
    """
    values = {name: _pick(name, given, app.config) for name in DEFAULTS}
    _check_types(values)
    if not values["client_id"]:
        raise ConfigurationError(
            "No client id is configured: Auth() got no client_id and app.config has no "
            "'IDENTITY_CLIENT_ID'. Give the Application (client) ID of your app registration "
            "one way or the other: Auth(app, os.environ['CLIENT_ID'], ...) as in the README, or "
            "app.config['IDENTITY_CLIENT_ID'] = ... (app.config.from_prefixed_env() reads it "
            "from the environment variable FLASK_IDENTITY_CLIENT_ID)."
        )
    credential = _credential(values, timeout=_as_seconds("timeout", values["timeout"]))
    if credential is None:
        raise ConfigurationError(
            "No client credential is configured: Auth() got none, and app.config has none of its keys. "
            "Set one of: 'client_credential' (IDENTITY_CLIENT_CREDENTIAL), a client secret, as in the "
            "README: Auth(..., client_credential=os.environ['CLIENT_SECRET']); 'client_certificate_path' "
            "(IDENTITY_CLIENT_CERTIFICATE_PATH), a PEM or PFX certificate file; or 'managed_identity' "
            "(IDENTITY_MANAGED_IDENTITY), 'system' or a user-assigned managed identity's client id, trusted "
            "by a federated identity credential; or 'client_assertion_file' (IDENTITY_CLIENT_ASSERTION_FILE), a "
            "token file such as Kubernetes workload identity's. app.config.from_prefixed_env() reads each from the "
            "environment variable FLASK_IDENTITY_<NAME>. See the docs page 'Credentials'."
        )
    redirect_uri = values["redirect_uri"]
    if not redirect_uri:
        raise ConfigurationError(
            "No redirect URI is configured. Register one in your app registration "
            "(Authentication > Add a platform > Web), for example "
            "http://localhost:5000/getAToken, then pass Auth(..., redirect_uri=...) or set "
            "app.config['IDENTITY_REDIRECT_URI'] (environment variable FLASK_IDENTITY_REDIRECT_URI "
            "with app.config.from_prefixed_env()). A path such as '/getAToken' is also accepted, "
            "with TRUSTED_HOSTS set: the full URL is then built from each request's host."
        )
    parts = urlsplit(redirect_uri)
    if not (parts.path.startswith("/") and (parts.scheme in ("http", "https") or not parts.scheme)):
        raise ConfigurationError(
            f"{_key('redirect_uri')} must be an http(s) URL or an absolute path, got {redirect_uri!r}."
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{_key('redirect_uri')} may not carry a query or fragment.")
    response_mode = values["response_mode"]
    if response_mode not in RESPONSE_MODES:
        raise ConfigurationError(f"{_key('response_mode')} must be 'query' or 'form_post', got {response_mode!r}.")
    authority, edit_profile, reset_password = _authorities(values)
    return Settings(
        client_id=str(values["client_id"]),
        client_credential=credential,
        redirect_uri=redirect_uri,
        redirect_path=parts.path,
        authority=authority,
        edit_profile_authority=edit_profile,
        reset_password_authority=reset_password,
        post_logout_view=values["post_logout_view"],
        prompt=values["prompt"],
        scopes=check_scopes(_as_words("scopes", values["scopes"]), _key("scopes")),
        response_mode=response_mode,
        timeout=_as_seconds("timeout", values["timeout"]),
        sign_in_timeout=_as_count("sign_in_timeout", values["sign_in_timeout"]),
        max_pending_sign_ins=_as_count("max_pending_sign_ins", values["max_pending_sign_ins"]),
        instance_discovery=_as_optional_bool("instance_discovery", values["instance_discovery"]),
        store_outage_page=bool(_as_optional_bool("store_outage_page", values["store_outage_page"])),
        allowed_tenants=_as_tenants(values["allowed_tenants"]),
        domain_hint=_as_option("domain_hint", sign_in_options.domain_hint, values["domain_hint"]),
        graph_endpoint=_check_url("graph_endpoint", values["graph_endpoint"], need_path=False),
        groups_cache_seconds=_as_seconds("groups_cache_seconds", values["groups_cache_seconds"]),
        client_certificate_path=credential.path if isinstance(credential, credentials.Certificate) else None,
        client_certificate_send_x5c=isinstance(credential, credentials.Certificate) and credential.send_x5c,
        managed_identity=credential.identity if isinstance(credential, credentials.ManagedIdentity) else None,
        client_assertion_file=credentials.assertion_file_of(credential),
    )


def _as_option(name: str, check: Callable[[Any], Any], value: Any) -> Any:
    """A sign-in option checked by ``check`` (see :mod:`identity_flask.sign_in_options`)."""
    try:
        return check(value)
    except sign_in_options.BadOption as exc:
        raise ConfigurationError(f"{_key(name)}: {exc}.") from None


@dataclasses.dataclass(frozen=True)
class ApiSettings:
    """The resolved settings of a web API protected by :class:`~identity_flask.ApiAuth`."""

    #: The API's own application (client) id: tokens for it carry it as ``aud`` (v2).
    client_id: str
    #: Needed only to call further APIs (on behalf of the caller, or as the app).
    client_credential: Any
    authority: Authority
    #: The API's Application ID URI: the ``aud`` of v1 tokens (``api://<client id>`` by default).
    app_id_uri: str
    timeout: float
    instance_discovery: bool | None
    allowed_tenants: tuple[str, ...]
    #: Client ids allowed to call (``azp`` or ``appid``); empty: any client.
    allowed_client_apps: tuple[str, ...]
    #: Seconds of clock difference tolerated on ``exp``, ``nbf`` and ``iat``.
    clock_leeway: int


def resolve_api(config: Mapping[str, Any], given: Mapping[str, Any]) -> ApiSettings:
    """Resolve and validate the settings of a web API.

    :param config: the app's config (``IDENTITY_*`` keys), or ``{}`` without an app.
    :param given: the arguments passed to :class:`~identity_flask.ApiAuth`.
    :raises ConfigurationError: with the name of the setting to fix.
    """
    values = {name: _pick(name, given, config, API_DEFAULTS) for name in API_DEFAULTS}
    for name in ("client_id", "authority", "oidc_authority", "b2c_tenant_name", "b2c_signup_signin_user_flow"):
        value = values[name]
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{_key(name)} must be a string, got {value!r}.")
    if not values["client_id"]:
        raise ConfigurationError(
            "No client id is configured for the API: ApiAuth() got no client_id and app.config has no "
            "'IDENTITY_CLIENT_ID'. Give the Application (client) ID of the API's app registration: "
            "tokens for the API carry it as their audience."
        )
    credential = _credential(values, timeout=_as_seconds("timeout", values["timeout"]))
    authority, _edit, _reset = _authorities(
        {**values, "b2c_edit_profile_user_flow": None, "b2c_reset_password_user_flow": None}
    )
    client_id = str(values["client_id"])
    app_id_uri = values["app_id_uri"] or f"api://{client_id}"
    if not isinstance(app_id_uri, str):
        raise ConfigurationError(f"{_key('app_id_uri')} must be a string, got {app_id_uri!r}.")
    leeway = values["clock_leeway"]
    if isinstance(leeway, str) and leeway.strip().isdecimal():
        leeway = int(leeway)
    if not isinstance(leeway, int) or isinstance(leeway, bool) or not 0 <= leeway <= 600:
        raise ConfigurationError(
            f"{_key('clock_leeway')} must be a whole number of seconds from 0 to 600, got {leeway!r}."
        )
    return ApiSettings(
        client_id=client_id,
        client_credential=credential,
        authority=authority,
        app_id_uri=app_id_uri.rstrip("/"),
        timeout=_as_seconds("timeout", values["timeout"]),
        instance_discovery=_as_optional_bool("instance_discovery", values["instance_discovery"]),
        allowed_tenants=_as_tenants(values["allowed_tenants"]),
        allowed_client_apps=_as_words("allowed_client_apps", values["allowed_client_apps"])
        if values["allowed_client_apps"]
        else (),
        clock_leeway=leeway,
    )
