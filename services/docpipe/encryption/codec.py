"""AES-256-GCM over whole Temporal payloads, with the key id in the clear.

A payload is serialised (metadata and data together, so not even the original
encoding or type hints leak), encrypted with the keyring's current key and a
fresh random 96-bit nonce, and wrapped in a new payload whose metadata says
``encoding: binary/encrypted`` and ``encryption-key-id: <id>``. The key id is
also bound in as associated data, so relabelling a payload with another key
id fails authentication instead of decrypting under the wrong key.

Decoding leaves payloads that are not ``binary/encrypted`` untouched: history
written before encryption was turned on stays readable, and workers can be
switched over one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from docpipe.encryption.keyring import Keyring

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
_AAD_PREFIX = b"docpipe-payload-v1:"


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be opened: unknown key id, or altered or damaged."""


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def seal(payload: Payload, key_id: str, cipher: AESGCM) -> Payload:
    """The encrypted envelope of ``payload`` under ``key_id``'s key."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = cipher.encrypt(nonce, payload.SerializeToString(), _aad(key_id))
    return Payload(
        metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
        data=nonce + ciphertext,
    )


def open_sealed(payload: Payload, key_id: str, cipher: AESGCM) -> Payload:
    """The original payload inside an envelope sealed with ``key_id``'s key."""
    nonce, ciphertext = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
    try:
        plain = cipher.decrypt(nonce, ciphertext, _aad(key_id))
    except InvalidTag:
        raise PayloadDecryptionError(
            f"payload encrypted with key {key_id!r} failed authentication: "
            "it was altered or damaged, or the key with that id is not the one that sealed it"
        ) from None
    return Payload.FromString(plain)


class EncryptionCodec(PayloadCodec):
    """Encrypts with the keyring's current key; decrypts with whichever key a payload names."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self.keyring = keyring
        self._ciphers = {key.key_id: AESGCM(key.secret) for key in keyring.keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.keyring.current.key_id
        cipher = self._ciphers[key_id]
        return [seal(payload, key_id, cipher) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) if is_encrypted(payload) else payload for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self.keyring.key_ids)
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r}, which is not among the "
                f"configured payload keys ({known}): add it to PAYLOAD_ENCRYPTION_KEYS "
                "(behind the current key) to read this history"
            )
        return open_sealed(payload, key_id, cipher)


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()
