"""Payload encryption keys: which one encrypts, which ones still decrypt.

A keyring is an ordered list of ``key-id:base64-key`` entries. The first key
encrypts everything new; every key decrypts, so a key can be rotated without
stopping anything: put the new key first, keep the old one behind it until
no history that used it is still needed, then drop it. The key id travels in
each payload's metadata, which is how a reader picks the right key.

This module only parses and validates; it imports neither the crypto library
nor Temporal, so settings can use it cheaply. Error messages name key ids and
positions, never key material.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

KEY_BYTES = 32
"""AES-256: every key is exactly 32 random bytes."""

_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KeyringError(ValueError):
    """The configured keys cannot be used (the message never contains key material)."""


@dataclass(frozen=True)
class PayloadKey:
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    """Keys in order of preference: ``keys[0]`` encrypts, all of them decrypt.

    Frozen and hashable, so it can be part of a cached connection's identity;
    secrets stay out of the repr.
    """

    keys: tuple[PayloadKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("no payload encryption key given")
        seen: set[str] = set()
        for key in self.keys:
            if key.key_id in seen:
                raise KeyringError(f"key id {key.key_id!r} appears twice")
            seen.add(key.key_id)

    @property
    def current(self) -> PayloadKey:
        """The key new payloads are encrypted with."""
        return self.keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self.keys)

    def find(self, key_id: str) -> PayloadKey | None:
        """The key with this id, or None when it is not (or no longer) configured."""
        return next((key for key in self.keys if key.key_id == key_id), None)


def parse_keyring(text: str) -> Keyring:
    """Keys from ``"id1:base64,id2:base64"``; commas or newlines separate entries.

    Blank lines and lines starting with ``#`` are ignored, so the same text
    works as an environment variable and as a mounted file.
    """
    entries = [
        entry.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for entry in line.split(",")
        if entry.strip()
    ]
    if not entries:
        raise KeyringError("no payload encryption key given (expected id:base64key,...)")
    return Keyring(tuple(_parse_entry(entry, position) for position, entry in enumerate(entries)))


def _parse_entry(entry: str, position: int) -> PayloadKey:
    key_id, sep, encoded = entry.partition(":")
    key_id, encoded = key_id.strip(), encoded.strip()
    where = f"key #{position + 1}"
    if not sep or not encoded:
        raise KeyringError(f"{where} must be written id:base64key")
    if not _KEY_ID.match(key_id):
        raise KeyringError(
            f"{where}: key id must be 1-64 letters, digits, '.', '_' or '-' "
            "(it is stored in every payload's metadata)"
        )
    secret = decode_key(encoded)
    if secret is None:
        raise KeyringError(f"key {key_id!r} is not valid base64")
    if len(secret) != KEY_BYTES:
        raise KeyringError(
            f"key {key_id!r} is {len(secret)} bytes; AES-256 needs exactly {KEY_BYTES} "
            "(generate one with: openssl rand -base64 32)"
        )
    return PayloadKey(key_id, secret)


def decode_key(encoded: str) -> bytes | None:
    """Standard or URL-safe base64 (padding optional), or None if it is neither."""
    padded = encoded + "=" * (-len(encoded) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None
