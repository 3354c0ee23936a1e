"""Keeping secrets out of log lines.

The extension's own lines carry no secret, and provider-supplied text goes
through :func:`one_line`. MSAL's token cache is given no code or verifier to
log (see :class:`identity_flask.client.TokenCache`). What is left is the web
server's request log (werkzeug, gunicorn), which prints the callback's URL
with its authorization code: that log belongs to the app, which attaches
:class:`RedactSecrets` to its handlers::

    from identity_flask import RedactSecrets

    for handler in logging.getLogger("gunicorn.access").handlers:
        handler.addFilter(RedactSecrets())

Nothing here changes a logger by itself.
"""

from __future__ import annotations

import logging
import re

#: Names whose values never reach a log line.
SECRET_NAMES = (
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    "refresh_token",
    "access_token",
    "id_token",
    "password",
)
_NAMES = "|".join(SECRET_NAMES)
_IN_QUERY = re.compile(rf"(?<![\w-])({_NAMES})=([^&\s\"']+)")
_IN_MAPPING = re.compile(rf"([\"'])({_NAMES})\1(\s*:\s*)([\"'])(?:\\.|(?!\4).)*\4")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the values of :data:`SECRET_NAMES` replaced, in query strings and mappings."""
    text = _IN_QUERY.sub(rf"\1={REDACTED}", text)
    return _IN_MAPPING.sub(rf"\1\2\1\3\4{REDACTED}\4", text)


#: The longest provider-supplied text a log line carries.
MAX_LOGGED = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def one_line(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as text fit for a log line: control characters (line breaks among
    them) shown as ``\\xNN``, cut to ``limit`` characters, and redacted, so a
    provider's or a client's text cannot forge log lines or flood the log."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more)"
    return redact(text)


class RedactSecrets(logging.Filter):
    """A logging filter that rewrites a record whose message holds a secret: the values
    of :data:`SECRET_NAMES` in query strings and mappings become ``[redacted]``.

    Attach it to handlers (it then sees every record they write, whichever
    logger sent it), or to a logger for that logger's own records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
