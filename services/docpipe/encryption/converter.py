"""The one place a Temporal DataConverter is made: plain, or encrypting.

Every client docpipe builds (workers, CLI, operator) gets its converter from
:func:`data_converter` through ``TemporalConnection.connect``, and workers
inherit their client's, so there is no way to start one process that writes
clear payloads while the others encrypt.

With a keyring, failures are converted with encoded attributes too: an
exception's message and stack trace (a failure reason naming a document) move
from the failure's clear-text fields into an encrypted payload.
"""

from __future__ import annotations

import dataclasses

from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from docpipe.encryption.keyring import Keyring


def data_converter(keyring: Keyring | None) -> DataConverter:
    """Temporal's default converter, plus encryption when ``keyring`` is given."""
    if keyring is None:
        return DataConverter.default
    from docpipe.encryption.codec import EncryptionCodec

    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
