"""Client credentials: how the app proves to the identity provider that it is the app.

One job: turn the credential settings into what MSAL's ``client_credential``
takes, checking them at start-up. Four kinds:

- ``secret``: a client secret (``client_credential="..."``);
- ``certificate``: a PEM or PFX file (``client_certificate_path``), read once;
  or a dict in one of MSAL's certificate shapes (``client_credential={...}``);
- ``managed_identity``: an Azure managed identity (``managed_identity``) whose
  token for ``api://AzureADTokenExchange`` is the app's client assertion, as a
  federated identity credential of the app registration trusts it;
- ``client_assertion``: a callable returning a signed JWT
  (``client_credential=callable``), such as :func:`assertion_from_file` for a
  Kubernetes workload identity token, or that token file named by the
  ``client_assertion_file`` setting.

No key, passphrase, secret or assertion is ever put in a log line, a page or
an error message: they name the setting and the file only.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, ProviderUnavailable

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

logger = logging.getLogger(__name__)

#: The audience of the tokens a federated identity credential accepts in Microsoft Entra ID.
FEDERATION_AUDIENCE = "api://AzureADTokenExchange"

#: A certificate that expires within this many days gets a warning at start-up.
EXPIRY_WARNING_DAYS = 30

#: The value of ``managed_identity`` that names the system-assigned managed identity.
SYSTEM_ASSIGNED = "system"

#: Where Kubernetes workload identity (and the Azure SDKs) find the service account token file.
FEDERATED_TOKEN_FILE_VARIABLE = "AZURE_FEDERATED_TOKEN_FILE"

#: The largest certificate file read: a certificate, its chain and a key take a few kilobytes.
_LARGEST_FILE = 1 << 20

#: What the user sees when the credential could not be had (the log says why).
_UNAVAILABLE = "The app could not prove its identity to the sign-in service just now. Please try again in a moment."


def _key(name: str) -> str:
    return f"'{name}' (IDENTITY_{name.upper()})"


def _utc_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class Certificate:
    """A client certificate and its private key, read from a file once, at start-up.

    The file is a PEM file holding the private key and the certificate (the
    certificate chain may follow), or a PFX (PKCS #12) file. The thumbprints
    are computed from the certificate. The key must be an RSA key, as Microsoft
    Entra ID takes no other for client assertions.

    :param path: the file.
    :param passphrase: the passphrase of an encrypted PEM key or of a PFX file.
    :param send_x5c: send the certificate with each assertion (``x5c``), for an
        app registration that trusts certificates by subject name and issuer.
        MSAL then signs PS256 and names the certificate by its SHA-256
        thumbprint; without, RS256 and its SHA-1 thumbprint. Entra takes both.
    :param now: the time to check validity at (now).
    :raises ConfigurationError: the file cannot be read, the passphrase is
        wrong or missing, there is no private key or certificate, they do not
        match, the key is not RSA, or the certificate is expired or not yet
        valid. The message names the setting and the file, never a value.

    .. versionadded:: 0.1
    """

    #: The credential kind, as :func:`credential_summary` names it.
    kind = "certificate"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        passphrase: str | bytes | None = None,
        send_x5c: bool = False,
        now: datetime | None = None,
    ) -> None:
        from cryptography.hazmat.primitives import hashes, serialization

        #: The file the certificate was read from.
        self.path = os.fspath(path)
        #: Whether each assertion carries the certificate (``x5c``).
        self.send_x5c = bool(send_x5c)
        key, certificate = _read_certificate_file(self.path, passphrase)
        #: When the certificate stops being valid (UTC).
        self.not_after: datetime = certificate.not_valid_after_utc
        #: When the certificate starts being valid (UTC).
        self.not_before: datetime = certificate.not_valid_before_utc
        #: The thumbprints an app registration shows for it, as upper-case hex.
        self.sha1_thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's name for it
        self.sha256_thumbprint = certificate.fingerprint(hashes.SHA256()).hex().upper()
        self.__private_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.__certificate = certificate.public_bytes(serialization.Encoding.PEM).decode()
        self._check_dates(now or datetime.now(timezone.utc))

    def _check_dates(self, now: datetime) -> None:
        where = f"{_key('client_certificate_path')}: the certificate in {self.path!r}"
        renew = (
            "Upload a new certificate to the app registration (Certificates & secrets) and point "
            "IDENTITY_CLIENT_CERTIFICATE_PATH at it."
        )
        if self.not_after <= now:
            raise ConfigurationError(f"{where} expired on {_utc_date(self.not_after)}. {renew}")
        if self.not_before > now:
            raise ConfigurationError(f"{where} is not valid before {_utc_date(self.not_before)}.")
        days = (self.not_after - now).total_seconds() / 86400
        if days <= EXPIRY_WARNING_DAYS:
            logger.warning(
                "The client certificate in %s expires on %s, in %d days: sign-ins fail from then on. %s",
                self.path,
                _utc_date(self.not_after),
                int(days),
                renew,
            )

    def msal_credential(self) -> dict[str, Any]:
        """The certificate as MSAL's ``client_credential`` takes it (holds the private key: never log it)."""
        if self.send_x5c:
            return {"private_key": self.__private_key, "public_certificate": self.__certificate}
        return {"private_key": self.__private_key, "thumbprint": self.sha1_thumbprint}

    def __repr__(self) -> str:
        return (
            f"Certificate({self.path!r}, sha1_thumbprint={self.sha1_thumbprint!r}, "
            f"not_after={_utc_date(self.not_after)!r}, send_x5c={self.send_x5c})"
        )


def _read_certificate_file(path: str, passphrase: str | bytes | None) -> tuple[PrivateKeyTypes, x509.Certificate]:
    """The RSA private key in ``path`` and the certificate that matches it.

    :raises ConfigurationError: naming the setting, the file and what is wrong.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    where = f"{_key('client_certificate_path')}: {path!r}"
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        if os.path.isfile(path) and os.path.getsize(path) > _LARGEST_FILE:
            raise ConfigurationError(f"{where} is larger than a certificate file can be ({_LARGEST_FILE} bytes).")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{where} could not be read ({exc.strerror or type(exc).__name__}). Give the path of a PEM file "
            "(private key and certificate) or a PFX file."
        ) from None
    if b"-----BEGIN" in data:
        key, certificates = _read_pem(where, data, secret or None)
    else:
        key, certificates = _read_pfx(where, data, secret)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(
            f"{where} holds a {type(key).__name__.removeprefix('_')} key; Microsoft Entra ID takes RSA "
            "certificates only for client credentials."
        )
    from cryptography.hazmat.primitives import serialization

    def spki(public: Any) -> bytes:
        raw: bytes = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return raw

    own = spki(key.public_key())
    for certificate in certificates:
        if spki(certificate.public_key()) == own:
            return key, certificate
    raise ConfigurationError(
        f"{where}: the private key does not match the certificate. Put the certificate of this key in the "
        "file (first, before its chain), or the key of this certificate."
    )


def _read_pem(where: str, data: bytes, passphrase: bytes | None) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY-----" not in data:
        raise ConfigurationError(
            f"{where} holds no private key. The PEM file needs the private key and the certificate "
            "(e.g. `cat key.pem cert.pem > client.pem`), or give a PFX file."
        )
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigurationError(
            f"{where} holds no certificate. The PEM file needs the certificate after the private key "
            "(e.g. `cat key.pem cert.pem > client.pem`), or give a PFX file."
        ) from None
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError:
        if passphrase is None:
            raise ConfigurationError(
                f"{where}: the private key is encrypted. Set its passphrase in {_key('client_certificate_passphrase')}."
            ) from None
        raise ConfigurationError(
            f"{where}: the private key is not encrypted, yet {_key('client_certificate_passphrase')} is set. "
            "Remove the passphrase setting (or encrypt the key)."
        ) from None
    except ValueError:
        if passphrase is not None:
            raise ConfigurationError(
                f"{where}: the private key could not be decrypted: {_key('client_certificate_passphrase')} "
                "is not its passphrase."
            ) from None
        raise ConfigurationError(
            f"{where}: the private key is not readable (damaged, or of an unknown kind)."
        ) from None
    except Exception:  # an unsupported algorithm, say; its message is of no use and may quote the file
        raise ConfigurationError(
            f"{where}: the private key is not readable (damaged, or of an unknown kind)."
        ) from None
    return key, certificates


def _read_pfx(where: str, data: bytes, passphrase: bytes | None) -> tuple[PrivateKeyTypes, list[x509.Certificate]]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(data, passphrase)
    except ValueError:
        if passphrase:
            raise ConfigurationError(
                f"{where} could not be opened: {_key('client_certificate_passphrase')} is not its passphrase "
                "(or the file is neither a PEM nor a PFX file)."
            ) from None
        raise ConfigurationError(
            f"{where} is neither a PEM file nor a PFX file that opens without a passphrase. If it is a PFX "
            f"file with a passphrase, set {_key('client_certificate_passphrase')}."
        ) from None
    except Exception:
        raise ConfigurationError(f"{where} is not a readable PFX file.") from None
    if key is None:
        raise ConfigurationError(f"{where} holds no private key: export the PFX file with its private key.")
    if certificate is None:
        raise ConfigurationError(f"{where} holds no certificate: export the PFX file with its certificate.")
    return key, [certificate, *chain]


class ClientAssertion:
    """A client assertion source for MSAL: calls ``source`` whenever MSAL sends a
    token request, and turns its failures into a 503 for the user.

    :param source: a callable taking no arguments and returning a signed JWT
        (``str`` or ``bytes``) whose issuer, subject and audience a federated
        identity credential of the app registration trusts.

    .. versionadded:: 0.1
    """

    #: The credential kind, as :func:`credential_summary` names it.
    kind = "client_assertion"

    def __init__(self, source: Callable[[], str | bytes]) -> None:
        self.source = source

    def __call__(self) -> str:
        """The assertion.

        :raises ProviderUnavailable: ``source`` failed or gave no assertion (503).
        """
        try:
            value = self.source()
        except ProviderUnavailable:
            raise
        except Exception as exc:
            logger.warning("The client assertion callable failed: %s", _failure(exc))
            raise ProviderUnavailable(_UNAVAILABLE) from None
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if not isinstance(value, str) or not value.strip():
            logger.warning("The client assertion callable returned no assertion (a %s)", type(value).__name__)
            raise ProviderUnavailable(_UNAVAILABLE)
        return value.strip()

    def msal_credential(self) -> dict[str, Any]:
        """The credential as MSAL's ``client_credential`` takes it."""
        return {"client_assertion": self}

    def __repr__(self) -> str:
        name = getattr(self.source, "__qualname__", None) or type(self.source).__name__
        return f"ClientAssertion({name})"


def _failure(exc: BaseException) -> str:
    """What went wrong, without the exception's message (which might quote a value)."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__} ({exc.strerror or 'no detail'}) on {exc.filename!r}"
    return type(exc).__name__


class AssertionFile:
    """Reads a client assertion from a file, again whenever the file changes.

    Kubernetes' workload identity projects the service account token into a
    file and replaces it before it expires; this reads the file when its
    inode, size or modification time changed, and otherwise returns what it
    read last. Use :func:`assertion_from_file` to make one.

    .. versionadded:: 0.1
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: The token file.
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""

    def __call__(self) -> str:
        """The token in the file.

        :raises OSError: the file is gone or unreadable.
        :raises ValueError: the file is empty.
        """
        status = os.stat(self.path)
        stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                value = Path(self.path).read_text(encoding="ascii", errors="replace").strip()
                if not value:
                    raise ValueError(f"the client assertion file {self.path!r} is empty")
                self._value, self._stamp = value, stamp
                logger.debug("Read the client assertion file %s", self.path)
            return self._value

    def __repr__(self) -> str:
        return f"AssertionFile({self.path!r})"


def assertion_from_file(path: str | os.PathLike[str] | None = None) -> AssertionFile:
    """A client assertion callable that reads ``path``, again whenever it changes.

    For Kubernetes workload identity: ``Auth(client_credential=assertion_from_file())``
    reads the file that ``AZURE_FEDERATED_TOKEN_FILE`` names.

    :param path: the token file; ``None`` for the one ``AZURE_FEDERATED_TOKEN_FILE`` names.
    :raises ConfigurationError: no path, or the file is not there.

    .. versionadded:: 0.1
    """
    if path is None:
        named = os.environ.get(FEDERATED_TOKEN_FILE_VARIABLE)
        if not named:
            raise ConfigurationError(
                f"assertion_from_file() got no path, and the environment variable {FEDERATED_TOKEN_FILE_VARIABLE} "
                'is not set. On Kubernetes, label the pod azure.workload.identity/use: "true" so that '
                "workload identity sets it, or pass the path of the token file."
            )
        path = named
    if not os.path.isfile(path):
        raise ConfigurationError(f"assertion_from_file(): the client assertion file {os.fspath(path)!r} is not there.")
    return AssertionFile(path)


def assertion_file_setting(path: Any) -> ClientAssertion:
    """The ``client_assertion_file`` setting, checked: a client assertion read from that file.

    For Kubernetes workload identity set it to the file ``AZURE_FEDERATED_TOKEN_FILE``
    names (``/var/run/secrets/azure/tokens/azure-identity-token``); the file is read
    again whenever it changes (see :class:`AssertionFile`).

    :raises ConfigurationError: not a path, or no file there.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"{_key('client_assertion_file')} must be a file path, got a {type(path).__name__}.")
    if not os.path.isfile(path):
        raise ConfigurationError(
            f"{_key('client_assertion_file')}: there is no file at {os.fspath(path)!r}. On Kubernetes, label the pod "
            'azure.workload.identity/use: "true" so that workload identity projects its token there.'
        )
    return ClientAssertion(AssertionFile(path))


def assertion_file_of(credential: Any) -> str | None:
    """The file a resolved credential reads its client assertion from, if it does."""
    if isinstance(credential, ClientAssertion) and isinstance(credential.source, AssertionFile):
        return credential.source.path
    return None


class ManagedIdentity:
    """An Azure managed identity as the app's credential, through a federated identity credential.

    Whenever MSAL needs a client assertion, this asks MSAL's managed-identity
    client for a token for ``api://AzureADTokenExchange``. That client keeps the
    token and asks the identity endpoint again only when less than five minutes
    of it are left (or half its life passed, for tokens of two hours or more),
    so the assertion is renewed before it expires and the endpoint is not asked
    per sign-in. One request at a time asks; the others wait for its answer.

    On App Service MSAL finds the endpoint in ``IDENTITY_ENDPOINT`` and
    ``IDENTITY_HEADER``; it also knows Azure VMs, Azure Arc, Machine Learning
    and Service Fabric.

    :param identity: ``"system"`` for the system-assigned managed identity, or
        the client id of a user-assigned one.
    :param timeout: seconds to wait for the identity endpoint.
    :raises ConfigurationError: ``identity`` is neither.

    .. versionadded:: 0.1
    """

    #: The credential kind, as :func:`credential_summary` names it.
    kind = "managed_identity"

    def __init__(self, identity: str, *, timeout: float = 10.0) -> None:
        import msal

        from .client import _TimeoutSession

        #: ``"system"`` or the client id of a user-assigned managed identity.
        self.identity = _managed_identity_name(identity)
        self.timeout = timeout
        chosen: msal.SystemAssignedManagedIdentity | msal.UserAssignedManagedIdentity = (
            msal.SystemAssignedManagedIdentity()
            if self.identity == SYSTEM_ASSIGNED
            else msal.UserAssignedManagedIdentity(client_id=self.identity)
        )
        self._client = msal.ManagedIdentityClient(chosen, http_client=_TimeoutSession(timeout))
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """The managed identity's token for ``api://AzureADTokenExchange``: the client assertion.

        :raises ProviderUnavailable: the identity endpoint could not be reached in
            time, or gave no token (503).
        """
        if not self._lock.acquire(timeout=self.timeout):
            logger.warning("The managed identity's token took longer than the timeout for another request")
            raise ProviderUnavailable(_UNAVAILABLE)
        try:
            result = self._client.acquire_token_for_client(resource=FEDERATION_AUDIENCE)
        except Exception as exc:  # MSAL lets the transport's errors through, and JSON errors of a bad answer
            logger.warning("The managed identity's endpoint could not be reached: %s", type(exc).__name__)
            raise ProviderUnavailable(_UNAVAILABLE) from None
        finally:
            self._lock.release()
        token = result.get("access_token") if isinstance(result, dict) else None
        if not isinstance(token, str) or not token:
            # MSAL's description of an App Service answer is "<status>, <message>": only the status is logged.
            status = str(result.get("error_description") or "").split(",")[0] if isinstance(result, dict) else ""
            logger.warning(
                "The managed identity (%s) got no token for %s: the identity endpoint answered %s. %s",
                self.identity,
                FEDERATION_AUDIENCE,
                status if status.isdecimal() else "without one",
                "Check that the app has this managed identity and that 'managed_identity' "
                "(IDENTITY_MANAGED_IDENTITY) names it."
                if status in ("400", "404")
                else "It is retried at the next token request (after 5 seconds for a 5xx answer).",
            )
            raise ProviderUnavailable(_UNAVAILABLE)
        if result.get("token_source") == "identity_provider":
            logger.info(
                "Got a token of the managed identity (%s) for %s, valid for %s s",
                self.identity,
                FEDERATION_AUDIENCE,
                result.get("expires_in"),
            )
        return token

    def msal_credential(self) -> dict[str, Any]:
        """The credential as MSAL's ``client_credential`` takes it."""
        return {"client_assertion": self}

    def __repr__(self) -> str:
        return f"ManagedIdentity({self.identity!r})"


def _managed_identity_name(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() == SYSTEM_ASSIGNED:
        return SYSTEM_ASSIGNED
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise ConfigurationError(
            f"{_key('managed_identity')} must be 'system' (the system-assigned managed identity) or the client id "
            f"of a user-assigned managed identity (a GUID: its Overview page's Client ID), got {value!r}."
        ) from None


def managed_identity(value: Any, *, client_id: str, timeout: float) -> ManagedIdentity:
    """The ``managed_identity`` setting, checked.

    :param client_id: the app's client id, which a managed identity's must not be.
    :raises ConfigurationError: not ``"system"`` nor a GUID, or the app's own client id.
    """
    if isinstance(value, str) and value.strip().lower() == client_id.strip().lower():
        raise ConfigurationError(
            f"{_key('managed_identity')} names the app's own client id. 'client_id' (IDENTITY_CLIENT_ID) is the "
            "app registration's, 'managed_identity' the managed identity's client id (or 'system'); the app "
            "registration trusts the managed identity through a federated identity credential."
        )
    return ManagedIdentity(value, timeout=timeout)


def certificate(path: Any, *, passphrase: Any, send_x5c: bool) -> Certificate:
    """The ``client_certificate_*`` settings, checked (see :class:`Certificate`).

    :raises ConfigurationError: a setting of the wrong type, or the file is unusable.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"{_key('client_certificate_path')} must be a file path, got a {type(path).__name__}.")
    if passphrase is not None and not isinstance(passphrase, (str, bytes)):
        raise ConfigurationError(
            f"{_key('client_certificate_passphrase')} must be a string, got a {type(passphrase).__name__}."
        )
    return Certificate(path, passphrase=passphrase, send_x5c=send_x5c)


def msal_credential(credential: Any) -> Any:
    """What MSAL's ``client_credential`` takes for a resolved credential.

    A secret (a string) and a dict in MSAL's shapes go as they are; a
    :class:`Certificate`, :class:`ManagedIdentity` or :class:`ClientAssertion`
    (or a bare callable) become MSAL's dict.
    """
    if isinstance(credential, (Certificate, ManagedIdentity, ClientAssertion)):
        return credential.msal_credential()
    if callable(credential):
        return {"client_assertion": ClientAssertion(credential)}
    return credential


def credential_summary(credential: Any) -> tuple[str, datetime | None]:
    """The kind of a credential, and for a certificate its expiry (``not_after``, UTC) when it can be read.

    :return: ``("secret" | "certificate" | "managed_identity" | "client_assertion", expiry or None)``;
        ``("none", None)`` for no credential.

    .. versionadded:: 0.1
    """
    if isinstance(credential, Certificate):
        return "certificate", credential.not_after
    if isinstance(credential, ManagedIdentity):
        return "managed_identity", None
    if credential is None:
        return "none", None
    if isinstance(credential, str):
        return "secret", None
    if isinstance(credential, Mapping):
        if "client_assertion" in credential:
            return "client_assertion", None
        return "certificate", _dict_expiry(credential)
    if callable(credential):
        return "client_assertion", None
    return "secret", None


def _dict_expiry(credential: Mapping[str, Any]) -> datetime | None:
    """The expiry of the certificate in one of MSAL's dicts, if it is there and readable."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        pem = credential.get("public_certificate")
        if isinstance(pem, (str, bytes)) and pem:
            return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem).not_valid_after_utc
        path = credential.get("private_key_pfx_path")
        if isinstance(path, str) and path:
            passphrase = credential.get("passphrase")
            secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
            _key_, found, _chain = pkcs12.load_key_and_certificates(Path(path).read_bytes(), secret or None)
            return found.not_valid_after_utc if found is not None else None
    except Exception:  # unreadable: the kind is still known
        logger.info("The expiry of the client certificate could not be read")
    return None
