"""Encrypted payloads: the keyring, the codec and the settings that configure them.

What must hold: nothing readable leaves in an encrypted payload; the newest key
encrypts while older keys still decrypt (rotation); a payload whose key is gone,
or whose bytes or key id were altered, fails loudly instead of decoding to
garbage; payloads written before encryption was turned on still read.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from docpipe.config import ConfigError, load_payload_keyring, load_settings
from docpipe.encryption.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    PayloadDecryptionError,
)
from docpipe.encryption.converter import data_converter
from docpipe.encryption.keyring import KeyringError, parse_keyring

SECRET = "Quarterly merger plan: Zanzibar"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def plain_payload(text: str = SECRET) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([text])[0]


@dataclass
class Doc:
    title: str
    source: str


# --- the codec ----------------------------------------------------------------


async def test_an_encoded_payload_holds_no_plaintext_and_decodes_to_the_original() -> None:
    codec = EncryptionCodec(parse_keyring(f"k1:{new_key()}"))
    original = plain_payload()

    (sealed,) = await codec.encode([original])

    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert SECRET.encode() not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString(), "the inner encoding is hidden too"
    assert await codec.decode([sealed]) == [original]


async def test_the_same_payload_encrypts_differently_each_time() -> None:
    codec = EncryptionCodec(parse_keyring(f"k1:{new_key()}"))
    first, second = await codec.encode([plain_payload(), plain_payload()])
    assert first.data != second.data  # a fresh nonce per payload


async def test_after_rotation_the_new_key_encrypts_and_the_old_one_still_decrypts() -> None:
    old, new = new_key(), new_key()
    before = EncryptionCodec(parse_keyring(f"old:{old}"))
    after = EncryptionCodec(parse_keyring(f"new:{new},old:{old}"))
    (written_before,) = await before.encode([plain_payload()])

    (written_after,) = await after.encode([plain_payload()])

    assert written_after.metadata[KEY_ID_METADATA] == b"new"
    assert await after.decode([written_before]) == [plain_payload()]
    assert await after.decode([written_after]) == [plain_payload()]


async def test_a_payload_sealed_with_a_key_no_longer_configured_names_that_key() -> None:
    (sealed,) = await EncryptionCodec(parse_keyring(f"retired:{new_key()}")).encode(
        [plain_payload()]
    )
    reader = EncryptionCodec(parse_keyring(f"current:{new_key()}"))
    with pytest.raises(PayloadDecryptionError, match=r"'retired'.*PAYLOAD_ENCRYPTION_KEYS"):
        await reader.decode([sealed])


async def test_altered_ciphertext_is_refused() -> None:
    codec = EncryptionCodec(parse_keyring(f"k1:{new_key()}"))
    (sealed,) = await codec.encode([plain_payload()])
    data = bytearray(sealed.data)
    data[-1] ^= 0x01
    sealed.data = bytes(data)
    with pytest.raises(PayloadDecryptionError, match="altered or damaged"):
        await codec.decode([sealed])


async def test_relabelling_a_payload_with_another_known_key_id_is_refused() -> None:
    """The key id is authenticated: swapping it cannot make another key 'open' the data."""
    shared = new_key()  # even the same key bytes under two ids
    codec = EncryptionCodec(parse_keyring(f"a:{shared},b:{shared}"))
    (sealed,) = await codec.encode([plain_payload()])
    sealed.metadata[KEY_ID_METADATA] = b"b"
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([sealed])


async def test_payloads_written_before_encryption_pass_through_decode_unchanged() -> None:
    codec = EncryptionCodec(parse_keyring(f"k1:{new_key()}"))
    clear = [plain_payload(), Payload(metadata={"encoding": b"binary/null"})]
    (sealed,) = await codec.encode([plain_payload("new")])
    assert await codec.decode([clear[0], sealed, clear[1]]) == [
        clear[0],
        plain_payload("new"),
        clear[1],
    ]


# --- the data converter ---------------------------------------------------------


async def test_without_keys_the_converter_is_temporals_default() -> None:
    assert data_converter(None) is DataConverter.default


async def test_with_keys_values_round_trip_and_failures_hide_their_message() -> None:
    converter = data_converter(parse_keyring(f"k1:{new_key()}"))
    payloads = await converter.encode([Doc(SECRET, "https://intranet/zanzibar.pdf")])
    assert all(SECRET.encode() not in p.SerializeToString() for p in payloads)
    assert await converter.decode(payloads, [Doc]) == [Doc(SECRET, "https://intranet/zanzibar.pdf")]
    # A failure's message and stack trace move into an (encrypted) payload.
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)


# --- the keyring ------------------------------------------------------------------


def test_the_first_key_encrypts_and_all_of_them_decrypt() -> None:
    ring = parse_keyring(f"k2:{new_key()}, k1:{new_key()}")
    assert ring.current.key_id == "k2"
    assert ring.key_ids == ("k2", "k1")
    assert ring.find("k1") is not None and ring.find("k0") is None


def test_a_key_file_may_hold_one_key_per_line_and_comments() -> None:
    ring = parse_keyring(f"# rotated 2024-05\nk2:{new_key()}\n\nk1:{new_key()}\n")
    assert ring.key_ids == ("k2", "k1")


def test_url_safe_base64_without_padding_is_accepted() -> None:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    assert len(parse_keyring(f"k:{key}").current.secret) == 32


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no payload encryption key"),
        ("k1", "id:base64key"),
        ("k1:", "id:base64key"),
        ("k1:!!not base64!!", "not valid base64"),
        (f"k1:{base64.b64encode(os.urandom(16)).decode()}", "16 bytes.*exactly 32"),
        (f"bad id:{new_key()}", "key id must be"),
        (f"k1:{new_key()},k1:{new_key()}", "appears twice"),
    ],
)
def test_unusable_keys_are_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(KeyringError, match=problem):
        parse_keyring(text)


def test_errors_and_reprs_never_show_key_material() -> None:
    short = base64.b64encode(b"SHOULD-NOT-SHOW").decode()
    with pytest.raises(KeyringError) as error:
        parse_keyring(f"k1:{short}")
    assert short not in str(error.value)
    key = new_key()
    assert key not in repr(parse_keyring(f"k1:{key}"))


# --- settings -----------------------------------------------------------------------


def test_keys_from_the_environment_reach_the_temporal_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_key()
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS", f"k2:{key},k1:{new_key()}")
    connection = load_settings().temporal_connection()
    assert connection.payload_keys is not None
    assert connection.payload_keys.key_ids == ("k2", "k1")
    assert key not in repr(connection) + repr(load_settings())


def test_keys_may_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"k2:{new_key()}\nk1:{new_key()}\n")
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS_FILE", str(keys))
    assert load_settings().payload_keyring().key_ids == ("k2", "k1")  # type: ignore[union-attr]
    assert load_payload_keyring().key_ids == ("k2", "k1")  # type: ignore[union-attr]


def test_no_keys_means_payloads_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYLOAD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("PAYLOAD_ENCRYPTION_KEYS_FILE", raising=False)
    assert load_settings().temporal_connection().payload_keys is None
    assert load_payload_keyring() is None


def test_a_bad_key_stops_the_process_naming_the_variable_not_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = base64.b64encode(b"SHOULD-NOT-SHOW!").decode()
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS", f"k1:{short}")
    for load in (load_settings, load_payload_keyring):
        with pytest.raises(ConfigError, match=r"PAYLOAD_ENCRYPTION_KEYS.*exactly 32") as error:
            load()
        assert short not in str(error.value)


def test_a_missing_key_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"PAYLOAD_ENCRYPTION_KEYS_FILE.*cannot read"):
        load_settings()


def test_keys_and_a_key_file_together_are_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"k1:{new_key()}")
    key = new_key()
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS", f"k1:{key}")
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS_FILE", str(keys))
    with pytest.raises(ConfigError, match="not both") as error:
        load_settings()
    assert key not in str(error.value), "a check across settings must not echo their values"
