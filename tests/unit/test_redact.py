"""redact_url: credentials never leave a URL that is shown or stored; the rest stays."""

from __future__ import annotations

import logging

import pytest

from docpipe.redact import RedactUrls, has_credentials, is_redacted, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@host.example/a.txt", "http://***@host.example/a.txt"),
        ("https://token@host.example:8443/a", "https://***@host.example:8443/a"),
        # An @ in the password: everything up to the last @ of the authority is userinfo.
        ("http://u:p@ss@host.example/", "http://***@host.example/"),
        ("http://user:pass@[::1]:8080/x", "http://***@[::1]:8080/x"),
    ],
)
def test_userinfo_is_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_s3_presigned_url_keeps_everything_but_its_secrets() -> None:
    url = (
        "https://bucket.s3.amazonaws.com/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=abc123def"
    )
    assert redact_url(url) == (
        "https://bucket.s3.amazonaws.com/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=REDACTED"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (  # GCS V4
            "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=sa%40p.iam&X-Goog-Signature=0a1b",
            "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=REDACTED&X-Goog-Signature=REDACTED",
        ),
        (  # GCS / S3 V2
            "https://storage.googleapis.com/b/o?GoogleAccessId=sa&Expires=1&Signature=zz",
            "https://storage.googleapis.com/b/o?GoogleAccessId=REDACTED&Expires=1"
            "&Signature=REDACTED",
        ),
        (  # Azure SAS
            "https://acct.blob.core.windows.net/c/b.pdf?sv=2022-11-02&se=2024-01-01&sr=b"
            "&sp=r&sig=Zm9vYmFy%3D",
            "https://acct.blob.core.windows.net/c/b.pdf?sv=2022-11-02&se=2024-01-01&sr=b"
            "&sp=r&sig=REDACTED",
        ),
        (  # names compare case-insensitively; a token without a value is left alone
            "http://h/x?TOKEN=t1&Sig=s&page=2&token",
            "http://h/x?TOKEN=REDACTED&Sig=REDACTED&page=2&token",
        ),
    ],
)
def test_signing_parameters_of_other_clouds_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/docs/a.pdf?page=2&lang=en#section-3",
        "http://127.0.0.1:8080/missing",
        "s3://bucket/key/with spaces.txt",
        "/data/reports/a.txt",
        "relative/path.txt?not=a-url",
        "",
        "file:///etc/passwd",
        "http://[not-an-ipv6/x?sig=",
    ],
)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert redact_url(url) == url
    assert not has_credentials(url) and not is_redacted(url)


def test_the_fragment_is_kept_and_both_kinds_combine() -> None:
    assert (
        redact_url("http://a:b@h.example/p?sig=1&x=2#frag?token=3")
        == "http://***@h.example/p?sig=REDACTED&x=2#frag?token=3"
    )
    assert has_credentials("http://a:b@h.example/p")


@pytest.mark.parametrize(
    "url",
    ["http://a:b@h.example/p", "https://h.example/o?X-Amz-Signature=abc", "http://h/?sig=1#x"],
)
def test_a_redacted_url_says_so_and_redacting_again_changes_nothing(url: str) -> None:
    shown = redact_url(url)
    assert not is_redacted(url) and is_redacted(shown)
    assert redact_url(shown) == shown


def test_urls_inside_a_message_are_redacted() -> None:
    message = (
        "HTTP 404 Not Found from http://user:secret@127.0.0.1:8080/missing?X-Amz-Signature=abc"
        " (redirected from 'https://h.example/?token=t')"
    )
    assert redact_text(message) == (
        "HTTP 404 Not Found from http://***@127.0.0.1:8080/missing?X-Amz-Signature=REDACTED"
        " (redirected from 'https://h.example/?token=REDACTED')"
    )


def test_the_log_filter_redacts_urls_in_messages_and_their_arguments() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s"',
        ("GET", "https://u:pw@h.example/x?sig=s1", "HTTP/1.1 200 OK"),
        None,
    )
    assert RedactUrls().filter(record)
    assert record.getMessage() == (
        'HTTP Request: GET https://***@h.example/x?sig=REDACTED "HTTP/1.1 200 OK"'
    )
