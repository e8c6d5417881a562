"""Perceptual-hash arithmetic and the band index that finds near duplicates."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docpipe.phash import BANDS, MAX_EXACT_DISTANCE, bands, hamming, nearest_earlier

hashes = st.integers(min_value=0, max_value=2**64 - 1).map(lambda v: f"{v:016x}")


def flip(phash: str, bits: list[int]) -> str:
    value = int(phash, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


def test_hamming_counts_the_differing_bits() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("0000000000000000", "8000000000000001") == 2
    assert hamming("ffffffffffffffff", "0000000000000000") == 64


def test_a_hash_splits_into_eight_bytes_most_significant_first() -> None:
    assert bands("0102030405060708") == [1, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(ValueError, match="16 hex digits"):
        bands("abc")


@given(hashes, st.data())
def test_every_hash_within_seven_bits_shares_a_band_so_the_index_misses_none(
    phash: str, data: st.DataObject
) -> None:
    distance = data.draw(st.integers(min_value=0, max_value=MAX_EXACT_DISTANCE))
    bits = data.draw(
        st.lists(st.integers(0, 63), min_size=distance, max_size=distance, unique=True)
    )
    other = flip(phash, bits)
    assert hamming(phash, other) == distance
    shared = sum(a == b for a, b in zip(bands(phash), bands(other), strict=True))
    assert shared >= BANDS - distance >= 1


def test_within_a_batch_each_image_points_at_its_closest_earlier_copy() -> None:
    rng = random.Random(7)
    original = f"{rng.getrandbits(64):016x}"
    resized = flip(original, [3, 40])
    edited = flip(original, [1, 2, 9, 20, 33])
    unrelated = f"{int(original, 16) ^ (2**64 - 1):016x}"
    found = nearest_earlier(
        [("a", original), ("b", unrelated), ("c", edited), ("d", resized)], max_distance=6
    )
    assert found == {"c": ("a", 5), "d": ("a", 2)}
    assert nearest_earlier([("a", original), ("c", edited)], max_distance=4) == {}
