"""The MSAL side: one :class:`IdentityClient` per app and process.

What is the same for every user is built once and shared: the HTTP connection
pool, MSAL's HTTP cache (so provider metadata is fetched once per process per
authority) and the end-session endpoint. Only the token cache is per user; it
is handed in by the caller for each call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

import msal
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import credentials, diagnosis, session_data, tokens
from .config import Authority, Settings
from .errors import ProviderError, ProviderUnavailable, SignInError
from .redaction import one_line

logger = logging.getLogger(__name__)

#: Held while MSAL builds a sign-in URL with its warning silenced: ``catch_warnings``
#: changes the process's filters for that moment, so two threads must not interleave.
_QUIET_WARNINGS = threading.Lock()

#: Request fields MSAL's token cache logs at DEBUG unless they are masked first.
_UNLOGGED_FIELDS = ("code", "code_verifier", "client_assertion", "assertion", "client_secret", "refresh_token")


class TokenCache(msal.SerializableTokenCache):  # type: ignore[misc]
    """MSAL's serializable token cache, which hands MSAL's debug log no code or verifier.

    MSAL logs every token event at DEBUG with the request's fields, masking
    some (secrets, refresh tokens) but not the authorization code or the PKCE
    verifier. None of them is needed to cache tokens, so they are masked
    before MSAL sees the event.
    """

    def add(self, event: dict[str, Any], now: float | None = None) -> Any:
        data = event.get("data")
        if isinstance(data, dict) and any(k in data for k in _UNLOGGED_FIELDS):
            event = {**event, "data": {k: "********" if k in _UNLOGGED_FIELDS else v for k, v in data.items()}}
        return super().add(event, now=now)


#: What reading a damaged token cache (a list for a section, a number for a secret) raises,
#: in :mod:`identity_flask.tokens` or in MSAL.
_CORRUPT_CACHE = (TypeError, ValueError, AttributeError, KeyError, OverflowError, AssertionError)

#: Where an OpenID provider publishes its configuration, below its issuer.
DISCOVERY_PATH = "/.well-known/openid-configuration"


class _BadAnswer(requests.exceptions.RequestException):
    """The provider answered, but not with what was asked for: an HTML page, say.

    A :class:`requests.RequestException`, so MSAL handles it as it handles a
    network error: it keeps nothing of it, and falls back on a token it still
    holds. :func:`provider_calls` makes it a 502.
    """


def _json_object(response: requests.Response) -> dict[str, Any]:
    """The JSON object ``response`` holds.

    :raises _BadAnswer: the body is not JSON, or not an object.
    """
    what = f"{response.status_code} answer ({response.headers.get('Content-Type', 'no content type')})"
    try:
        value = json.loads(response.text)
    except ValueError:
        raise _BadAnswer(f"a {what} that is not JSON", response=response) from None
    if not isinstance(value, dict):
        raise _BadAnswer(f"a {what} that is not a JSON object", response=response)
    return value


def _is_endpoint(value: object) -> bool:
    """Whether ``value`` is an https URL with a host and a path, as MSAL needs of endpoints."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    segments = parts.path.split("/")
    return parts.scheme == "https" and bool(host) and len(segments) > 1 and segments[1] != ""


def _discovery_document(response: requests.Response) -> dict[str, Any]:
    """The provider configuration in ``response``, if it is one MSAL can use.

    :raises _BadAnswer: not a 200 answer with a JSON object naming https
        ``authorization_endpoint`` and ``token_endpoint`` URLs, and strings for
        ``issuer`` and ``end_session_endpoint`` if it names them.
    """
    if response.status_code != 200:
        raise _BadAnswer(f"a {response.status_code} answer to a discovery request", response=response)
    document = _json_object(response)
    for key in ("authorization_endpoint", "token_endpoint"):
        if not _is_endpoint(document.get(key)):
            raise _BadAnswer(f"a discovery document without a usable {key}", response=response)
    for key in ("issuer", "end_session_endpoint"):
        if not isinstance(document.get(key, ""), str):
            raise _BadAnswer(f"a discovery document whose {key} is not a string", response=response)
    return document


def _check_answer(response: requests.Response) -> None:
    """Refuse an answer that MSAL would keep or read but cannot use.

    MSAL keeps every 2xx answer to a GET for a day in the shared HTTP cache, so a
    discovery answer that is not a discovery document would break sign-in until
    then; it is refused here, before MSAL sees it. MSAL posts only to token
    endpoints, which answer with a JSON object (RFC 6749, 5.1 and 5.2) unless
    they fail with a 5xx, which MSAL handles itself.
    """
    method = (response.request.method or "").upper()
    if method == "GET" and urlsplit(response.url).path.endswith(DISCOVERY_PATH):
        if 200 <= response.status_code < 300:
            _discovery_document(response)
    elif method == "POST" and response.status_code < 500:
        _json_object(response)


class SilentResult(NamedTuple):
    """What :meth:`IdentityClient.silent` found."""

    #: The token as a view gets it (:func:`~identity_flask.tokens.from_answer`), or ``None``.
    token: dict[str, Any] | None
    #: Why there is no token: MSAL's error code, ``no_account`` or ``no_token``.
    error: str | None
    #: The user's cache (:func:`~identity_flask.tokens.trimmed`) when MSAL changed it
    #: (store it), else ``None``.
    cache: tokens.Cache | None


class _TimeoutSession(requests.Session):
    """A :class:`requests.Session` whose requests time out unless told otherwise,
    and that refuses answers MSAL cannot use (see :func:`_check_answer`).

    MSAL applies its ``timeout`` only to sessions it builds itself.
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        # One retry for a connection that failed to open; none for a read that timed
        # out, so a stalled provider holds a worker for ``timeout`` and no longer.
        retries = Retry(total=1, connect=1, read=0, status=0, other=0)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=retries)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        response = super().request(method, url, *args, **kwargs)
        _check_answer(response)
        return response


@contextlib.contextmanager
def provider_calls(action: str) -> Iterator[None]:
    """Turn network failures while talking to the provider into a 503, and
    failures or unusable answers of the provider's into a 502."""
    try:
        yield
    except _BadAnswer as exc:
        logger.warning("Identity provider answered badly while %s: %s", action, one_line(exc))
        raise ProviderError("The sign-in service failed. Please try again in a moment.") from None
    except requests.exceptions.RequestException as exc:
        logger.warning("Identity provider unreachable while %s: %s", action, type(exc).__name__)
        raise ProviderUnavailable("The sign-in service could not be reached. Please try again in a moment.") from None
    except msal.exceptions.MsalServiceError as exc:
        logger.warning("Identity provider failed while %s: %s", action, type(exc).__name__)
        raise ProviderError("The sign-in service failed. Please try again in a moment.") from None


class IdentityClient:
    """Talks to the identity provider through MSAL for one app.

    :param settings: the app's resolved settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Shared by every MSAL application built here: discovery documents are
        #: fetched once, and kept only when they are usable ones (see :func:`_check_answer`).
        #: Emptied whenever building an MSAL application fails.
        self.http_cache: dict[Any, Any] = {}
        self.http = _TimeoutSession(settings.timeout)
        self._end_session_endpoint: str | None = None
        #: Per thread: one MSAL application bound to its own, reusable token cache.
        self._per_thread = threading.local()
        #: Refreshes in flight, one per user (see :class:`~identity_flask.tokens.Refreshes`).
        self.refreshes = tokens.Refreshes()
        #: Whether the provider's refresh tokens get tokens for any consented scope, as
        #: Microsoft's do: then a user's cache keeps one (see :func:`~identity_flask.tokens.trimmed`).
        self.scope_free_refresh = settings.authority.kind != "oidc"
        #: What MSAL looks access tokens up by: client id, authority instance and tenant.
        #: Known once an MSAL application was built for silent requests.
        self._where: tuple[str, str, str] | None = None

    def msal_app(
        self, cache: msal.TokenCache | None = None, authority: Authority | None = None
    ) -> msal.ConfidentialClientApplication:
        """Build an MSAL application bound to one user's token cache.

        Cheap once the provider's metadata is in :attr:`http_cache`.

        :raises ProviderError: the provider failed, or answered with something
            that is not its configuration.
        :raises ProviderUnavailable: it could not be reached, or its configuration
            could not be had or used.
        """
        authority = authority or self.settings.authority
        try:
            with provider_calls("reading its configuration"):
                try:
                    app = msal.ConfidentialClientApplication(
                        self.settings.client_id,
                        client_credential=credentials.msal_credential(self.settings.client_credential),
                        token_cache=cache,
                        http_client=self.http,
                        http_cache=self.http_cache,
                        **authority.msal_kwargs(self.settings.instance_discovery),
                    )
                except ValueError as exc:
                    if "discovery" not in str(exc).lower() and "configuration" not in str(exc).lower():
                        raise
                    logger.warning("Identity provider configuration unusable for %s", authority.url)
                    raise ProviderUnavailable(
                        "The sign-in service's configuration could not be read. Please try again in a moment."
                    ) from None
            if authority is self.settings.authority:
                self._where = (self.settings.client_id, app.authority.instance, app.authority.tenant)
            return app
        except Exception:
            # MSAL keeps each 2xx answer to a GET for a day, also one it then refused (a
            # document whose issuer does not match, say): drop all, so the next request asks again.
            self.http_cache.clear()
            raise

    def start(
        self,
        scopes: Sequence[str],
        redirect_uri: str,
        *,
        authority: Authority | None = None,
        prompt: str | None = None,
        response_mode: str | None = None,
        claims: str | None = None,
        login_hint: str | None = None,
        domain_hint: str | None = None,
        max_age: int | None = None,
    ) -> dict[str, Any]:
        """Begin an authorization code flow with PKCE, state and nonce.

        :param max_age: sent to the provider; the view that asked for it checks
            the ``auth_time`` it answers with (MSAL's own check would turn a
            provider that ignores it into a failed sign-in rather than a clear refusal).
        :return: MSAL's flow dict; ``auth_uri`` is where to send the browser.
        """
        app = self.msal_app(authority=authority)
        # MSAL warns on every sign-in that does not use form_post. The query response is
        # the default here on purpose: it works with SameSite=Lax cookies, PKCE makes a
        # leaked code useless, and the callback's answer sends no Referer and is not cached.
        with _QUIET_WARNINGS, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                list(scopes),
                redirect_uri=redirect_uri,
                prompt=prompt,
                response_mode=response_mode if response_mode != "query" else None,
                claims_challenge=claims,
                login_hint=login_hint,
                domain_hint=domain_hint,
                max_age=max_age,
            )
        flow.pop("max_age", None)
        return flow

    def finish(
        self,
        flow: dict[str, Any],
        response: Mapping[str, str],
        cache: msal.TokenCache,
        *,
        authority: Authority | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """Redeem the authorization code; the tokens land in ``cache``.

        :return: MSAL's result, with ``id_token_claims``, and the MSAL account id
            of the signed-in user.
        :raises SignInError: the code was refused (used, expired, or not ours).
        """
        app = self.msal_app(cache, authority)
        with provider_calls("redeeming an authorization code"):
            try:
                result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, dict(response))
            except ValueError as exc:
                logger.warning("Sign-in response rejected: %s", one_line(exc))
                raise SignInError("The sign-in response did not match the request. Please sign in again.") from None
            except RuntimeError:  # MSAL's check of the id token's nonce (or auth_time)
                logger.warning("Sign-in response rejected: the id token was not issued for this sign-in")
                raise SignInError("The sign-in response did not match the request. Please sign in again.") from None
            except (AttributeError, KeyError, TypeError, IndexError):  # an id token MSAL cannot read
                logger.warning("Token endpoint answered the code with an unreadable id token")
                raise ProviderError("The sign-in service answered with an unreadable id token.") from None
        if "error" in result:
            error = str(result.get("error"))
            found = diagnosis.token_endpoint_failure(
                error, str(result.get("error_description") or ""), redirect_uri=flow.get("redirect_uri")
            )
            # The description is not logged: only the code the table knows, with its fix.
            logger.warning(
                "Token endpoint refused the code: %s%s", one_line(error), f" {found.log_line()}" if found else ""
            )
            if error in ("invalid_grant", "invalid_request", "unauthorized_client"):
                raise SignInError(
                    "The sign-in could not be completed (the code was refused). Please sign in again.",
                    error=error,
                    diagnosis=found,
                )
            raise ProviderError("The sign-in service could not complete the sign-in.", error=error, diagnosis=found)
        return result, first_account_id(app)

    def silent(self, scopes: Sequence[str], cache: Mapping[str, Any] | None, account_id: str) -> SilentResult:
        """Ask MSAL for an access token from the user's token cache, refreshing it if needed.

        :param cache: the user's token cache, or ``None``.
        :return: the token, or why there is none, and the cache to store; that is
            ``None`` when the cache did not change and need not be stored again.
        """
        app, own_cache = self._thread_app()
        # The thread's cache holds this user's tokens only for the length of this call:
        # it is filled from theirs first (replacing whatever it held, also when they
        # have none) and emptied after.
        own_cache.deserialize(json.dumps(cache) if cache else None)
        new_cache: tokens.Cache | None = None
        try:
            accounts = [a for a in app.get_accounts() if a.get("home_account_id") == account_id]
            if not accounts:
                return SilentResult(None, "no_account", None)
            with provider_calls("refreshing a token"):
                result = app.acquire_token_silent_with_error(list(scopes), account=accounts[0])
            if own_cache.has_state_changed:
                new_cache = tokens.trimmed(
                    json.loads(own_cache.serialize()), time.time(), scope_free_refresh=self.scope_free_refresh
                )
        finally:
            own_cache.deserialize(None)
        if result is None:
            return SilentResult(None, "no_token", new_cache)
        if "access_token" not in result:
            error = str(result.get("error"))
            if error.startswith(("server_error", "temporarily_unavailable")):
                logger.warning("Token refresh failed at the provider: %s", one_line(error))
                raise ProviderError("The sign-in service could not refresh your access.", error=error)
            logger.info("Token for %s needs a new sign-in: %s", " ".join(scopes), one_line(error))
            return SilentResult(None, error, new_cache)
        return SilentResult(tokens.from_answer(result, scopes), None, new_cache)

    def token_for(self, session: session_data.Session, scopes: Sequence[str]) -> dict[str, Any] | None:
        """The access token a view asked for, from the signed-in user's token cache in ``session``.

        A usable token is read straight from the cache the session holds
        (:func:`~identity_flask.tokens.cached_token`); otherwise MSAL refreshes
        it, once per user at a time in this process, and the cache is written
        back to the session.

        :return: ``access_token``, ``token_type``, ``expires_in`` and the
            ``scopes`` granted; ``None`` when the user must sign in again (to
            consent, or because the refresh token is gone).
        :raises ProviderUnavailable: a refresh for the same user did not end
            within the provider timeout.
        """
        account = session_data.account_id(session)
        if account is None:
            return None
        cache = session_data.token_cache(session)
        try:
            if self._where is not None:
                token = tokens.cached_token(cache, self._where, account, scopes, time.time())
                if token is not None:
                    return token
            token, new_cache = self._refresh(cache, account, tuple(sorted(scopes)))
        except _CORRUPT_CACHE as exc:
            # Only this code writes the cache, so this is a damaged store record: the user
            # signs in again (with a fresh cache) rather than meeting a 500 on every page.
            logger.warning("A token cache in the session is unreadable (%s); it is dropped", type(exc).__name__)
            session_data.drop_token_cache(session)
            return None
        if new_cache is not None:
            session_data.store_token_cache(session, new_cache)
        return token

    def _refresh(
        self, cache: tokens.Cache | None, account: str, scopes: tuple[str, ...]
    ) -> tuple[dict[str, Any] | None, tokens.Cache | None]:
        """Ask MSAL, one request per user at a time; the others read what it got.

        :return: the token (or ``None``) and the cache to store (or ``None``).
        """
        flight = self.refreshes.join(account)
        joined_at = time.monotonic()
        try:
            if not flight.lock.acquire(timeout=self.settings.timeout):
                logger.warning("A token refresh for the same user took longer than the provider timeout")
                raise ProviderUnavailable("The sign-in service is slow to answer. Please try again in a moment.")
            try:
                failure = flight.failure
                if failure is not None and flight.failed_at >= joined_at:
                    # The refresh this request waited for failed at the provider: so does this
                    # one, rather than make a stalled provider stall every request in line.
                    # A request that came after the failure asks again.
                    raise type(failure)(failure.description, error=failure.error)
                try:
                    return self._refresh_in(flight, cache, account, scopes, joined_at)
                except (ProviderUnavailable, ProviderError) as exc:
                    flight.failure, flight.failed_at = exc, time.monotonic()
                    raise
            finally:
                flight.lock.release()
        finally:
            self.refreshes.leave(account, flight)

    def _refresh_in(
        self,
        flight: tokens.Flight,
        cache: tokens.Cache | None,
        account: str,
        scopes: tuple[str, ...],
        joined_at: float,
    ) -> tuple[dict[str, Any] | None, tokens.Cache | None]:
        changed: tokens.Cache | None = None
        if flight.cache is not None and tokens.refresh_secrets(cache) == flight.source:
            # Another request of this user refreshed the very cache this one read, while
            # this one waited or just before: take its cache, with whatever this session's
            # cache holds that it does not. (A session whose cache changed otherwise, by a
            # new sign-in say, keeps its own.)
            now = time.time()
            cache = changed = tokens.merged(cache, flight.cache, now, scope_free_refresh=self.scope_free_refresh)
            got = flight.tokens.get(scopes)
            if got is not None and flight.refreshed_at >= joined_at and got[1] > now:
                # This request waited for that very refresh: its token is as fresh as the
                # provider makes them (a token shorter-lived than MSAL's margin included).
                return {**got[0], "expires_in": int(got[1] - now)}, changed
            if self._where is not None:
                found = tokens.cached_token(cache, self._where, account, scopes, now)
                if found is not None:
                    return found, changed
        source = tokens.refresh_secrets(cache)
        result = self.silent(scopes, cache, account)
        if result.cache is not None:
            changed = flight.cache = result.cache
            flight.source = source
            flight.refreshed_at = time.monotonic()
        token = result.token
        if token is None:
            return None, changed
        lifetime = token["expires_in"]
        if result.cache is not None and lifetime > 0:
            flight.tokens[scopes] = (token, time.time() + lifetime)
        return token, changed

    def _thread_app(self) -> tuple[msal.ConfidentialClientApplication, TokenCache]:
        """This thread's MSAL application for silent token requests, built on first use.

        Building an MSAL application costs about half a millisecond even with the
        provider's metadata cached, which made a scoped page view markedly slower
        than an unscoped one. MSAL binds its refresh callbacks to the application's
        own cache object, so that object is kept for the application's life and
        refilled for each call (see :meth:`silent`); a thread serves one request
        at a time, so no two users ever share it at once.
        """
        pair: tuple[msal.ConfidentialClientApplication, TokenCache] | None = getattr(self._per_thread, "app", None)
        if pair is None:
            own_cache = TokenCache()
            pair = (self.msal_app(own_cache), own_cache)
            self._per_thread.app = pair
        return pair

    def end_session_endpoint(self) -> str | None:
        """Where to send the browser to sign out at the provider, if it has such a place.

        :raises ProviderError: the provider's discovery answer is not a usable document.
        :raises ProviderUnavailable: the provider could not be reached in time.
        """
        known = self.settings.authority.logout_endpoint
        if known:
            return known
        if self._end_session_endpoint is None:
            # No lock: sign-outs that find nothing known yet each ask, rather than wait
            # in line behind a provider that stalls. Only a usable answer is kept.
            url = self.settings.authority.url + DISCOVERY_PATH
            with provider_calls("reading its configuration"):
                response = self.http.get(url)
                if response.status_code != 200:
                    logger.warning("Discovery at %s answered %s", url, response.status_code)
                    return None
                document = _discovery_document(response)
            self._end_session_endpoint = str(document.get("end_session_endpoint") or "")
        return self._end_session_endpoint or None

    def logout_url(self, return_to: str, logout_hint: str | None = None) -> str | None:
        """The provider's sign-out URL that comes back to ``return_to``.

        Each value is percent-encoded (spaces as ``%20``, never ``+``). No
        ``id_token_hint`` is sent: the extension keeps no raw id token.

        :param logout_hint: the user's ``login_hint`` claim: Entra ID and
            External ID then sign that account out without showing the account
            picker. Sent to OpenID Connect providers too (RP-Initiated Logout
            defines it); B2C ignores it, so it is left out there.
        :return: ``None`` when the provider has no end-session endpoint.
        """
        endpoint = self.end_session_endpoint()
        if not endpoint:
            return None
        kind = self.settings.authority.kind
        query = {"post_logout_redirect_uri": return_to}
        if logout_hint and kind != "b2c":
            query["logout_hint"] = logout_hint
        if kind == "oidc":
            query["client_id"] = self.settings.client_id
        separator = "&" if "?" in endpoint else "?"
        return endpoint + separator + urlencode(query, quote_via=quote)


def first_account_id(app: msal.ClientApplication) -> str | None:
    """The MSAL account id of the (only) user in ``app``'s token cache, if any."""
    accounts = app.get_accounts()
    return str(accounts[0]["home_account_id"]) if accounts else None
