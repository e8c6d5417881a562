"""Credentials out of URLs before a URL is shown or stored (pure, no IO).

A source URL can carry its own credentials: ``http://user:pass@host/...`` or a
presigned query string (``X-Amz-Signature``, ``X-Goog-Signature``, an Azure SAS
``sig``...). Whoever can read a failure reason, a PostgreSQL row, a Temporal
outcome, a webhook payload or a log line must not be able to fetch the document
(or anything else the credentials open) with it. :func:`redact_url` keeps
everything a person needs to recognise the source -- scheme, host, port, path,
the other parameters -- and replaces only the secret parts.

The full URL is still what the downloader fetches and what a document's id is
hashed from; only what is *shown or stored* goes through here.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

USERINFO_MASK = "***"
VALUE_MASK = "REDACTED"

SIGNING_PARAMETERS = frozenset(
    {
        # AWS SigV4 presigned URLs, and SigV2 (AWSAccessKeyId/Signature/Expires).
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "signature",
        # Google Cloud Storage V4 signed URLs, and V2 (GoogleAccessId/Signature).
        "x-goog-signature",
        "x-goog-credential",
        "x-goog-security-token",
        "googleaccessid",
        # Azure SAS tokens and generic bearer-style parameters.
        "sig",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "api_key",
        "apikey",
        "password",
        "secret",
        "client_secret",
    }
)
"""Query parameters (compared case-insensitively) whose value is a secret."""

# scheme://authority rest -- authority ends at the first /, ? or #.
_URL_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)//(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S
)
# A URL inside free text (an exception message, a log line): up to whitespace or a quote.
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """``url`` with its userinfo replaced by ``***`` and the values of signing
    query parameters by ``REDACTED``; anything that is not a ``scheme://`` URL
    (a local path, an empty string) comes back unchanged. Never raises."""
    match = _URL_RE.match(url)
    if match is None:
        return url
    authority = match["authority"]
    if "@" in authority:
        authority = f"{USERINFO_MASK}@{authority.rpartition('@')[2]}"
    rest, hash_mark, fragment = match["rest"].partition("#")
    path, question_mark, query = rest.partition("?")
    if query:
        query = "&".join(_redact_parameter(item) for item in query.split("&"))
    return f"{match['scheme']}//{authority}{path}{question_mark}{query}{hash_mark}{fragment}"


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (messages from libraries quote URLs)."""
    return _URL_IN_TEXT_RE.sub(lambda m: redact_url(m.group(0)), text)


def has_credentials(url: str) -> bool:
    """True if :func:`redact_url` would change ``url``: it carries a credential."""
    return redact_url(url) != url


def is_redacted(url: str) -> bool:
    """True if ``url`` came out of :func:`redact_url` with something masked: what was
    masked is gone, so the URL cannot be fetched as the original could."""
    match = _URL_RE.match(url)
    if match is None:
        return False
    if match["authority"].startswith(f"{USERINFO_MASK}@"):
        return True
    query = match["rest"].partition("#")[0].partition("?")[2]
    return any(
        value == VALUE_MASK and unquote_plus(name).strip().lower() in SIGNING_PARAMETERS
        for name, _, value in (item.partition("=") for item in query.split("&"))
    )


class RedactUrls(logging.Filter):
    """A logging filter that redacts every URL in a record's message.

    For libraries that log the URLs they request (httpx does, with DEBUG logs
    on): attached to their logger, a credential never reaches a handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, ()
        return True


def _redact_parameter(item: str) -> str:
    name, _equals, value = item.partition("=")
    if value and unquote_plus(name).strip().lower() in SIGNING_PARAMETERS:
        return f"{name}={VALUE_MASK}"
    return item
