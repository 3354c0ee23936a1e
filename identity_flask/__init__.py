"""Sign users in to Flask apps with Microsoft Entra ID, External ID, Azure AD B2C
or any OpenID Connect provider, and get access tokens for the APIs they call."""

from .api import ApiAuth
from .credentials import assertion_from_file, credential_summary
from .errors import (
    AccessDenied,
    BearerTokenError,
    ClaimsChallenge,
    ConfigurationError,
    GroupRequired,
    GroupsUnavailable,
    GroupsUnreadable,
    IdentityError,
    NotSignedIn,
    ProviderError,
    ProviderUnavailable,
    RoleRequired,
    SessionStoreUnavailable,
    SignInError,
    SignInLoop,
    TenantNotAllowed,
)
from .extension import Auth, current_user
from .redaction import RedactSecrets
from .signals import sign_in_failed, signed_in, signed_out, unauthorized

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "ApiAuth",
    "Auth",
    "BearerTokenError",
    "ClaimsChallenge",
    "ConfigurationError",
    "GroupRequired",
    "GroupsUnavailable",
    "GroupsUnreadable",
    "IdentityError",
    "NotSignedIn",
    "ProviderError",
    "ProviderUnavailable",
    "RedactSecrets",
    "RoleRequired",
    "SessionStoreUnavailable",
    "SignInError",
    "SignInLoop",
    "TenantNotAllowed",
    "assertion_from_file",
    "credential_summary",
    "current_user",
    "sign_in_failed",
    "signed_in",
    "signed_out",
    "unauthorized",
]
