"""Perceptual-hash arithmetic: how far apart two images are, and how to find
close ones among millions without comparing against each.

Pure and dependency-free, so the batch workflow (inside Temporal's sandbox)
and the metadata store share it with the GPU worker that computes the hashes.

Finding near duplicates is a Hamming-ball search. Splitting the 64-bit hash
into ``BANDS`` bands of 8 bits turns it into exact lookups: two hashes at
distance ``d`` differ in at most ``d`` bands, so they agree exactly on at
least ``BANDS - d`` of them (pigeonhole). Indexing ``(band, value)`` pairs and
taking any hash that shares one band with the query therefore finds *every*
hash within ``MAX_EXACT_DISTANCE`` = 7 bits, and only a small candidate set
needs a full comparison (multi-index hashing).
"""

from __future__ import annotations

HASH_BITS = 64
BANDS = 8
MAX_EXACT_DISTANCE = BANDS - 1
"""Up to this many differing bits, the band lookup misses no near duplicate."""
DEFAULT_NEAR_DUPLICATE_BITS = 6
"""Same picture up to resizing, recompression or small edits (as imagehash users pick)."""


def hamming(hash_a: str, hash_b: str) -> int:
    """How many bits two perceptual hashes differ in (0 = same picture)."""
    if len(hash_a) != len(hash_b):
        raise ValueError(f"hashes of different lengths: {hash_a!r} and {hash_b!r}")
    return (int(hash_a, 16) ^ int(hash_b, 16)).bit_count()


def near_duplicate(hash_a: str, hash_b: str, threshold: int = DEFAULT_NEAR_DUPLICATE_BITS) -> bool:
    """Whether two images are the same picture up to resizing, recompression
    or small edits: at most ``threshold`` of 64 hash bits differ."""
    return hamming(hash_a, hash_b) <= threshold


def bands(phash: str) -> list[int]:
    """The hash's ``BANDS`` bytes, most significant first (band i = hex digits 2i, 2i+1)."""
    if len(phash) != HASH_BITS // 4:
        raise ValueError(f"a 64-bit perceptual hash has 16 hex digits, not {phash!r}")
    return [int(phash[2 * i : 2 * i + 2], 16) for i in range(BANDS)]


def nearest_earlier(
    phashes: list[tuple[str, str]], max_distance: int
) -> dict[str, tuple[str, int]]:
    """For each ``(id, hash)`` in order, the closest *earlier* one within ``max_distance``.

    Ties go to the earliest. Used within one batch, where "earlier" is input order.
    """
    found: dict[str, tuple[str, int]] = {}
    for index, (doc_id, phash) in enumerate(phashes):
        best: tuple[str, int] | None = None
        for other_id, other_hash in phashes[:index]:
            distance = hamming(phash, other_hash)
            if distance <= max_distance and (best is None or distance < best[1]):
                best = (other_id, distance)
        if best is not None:
            found[doc_id] = best
    return found
