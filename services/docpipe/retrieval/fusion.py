"""Reciprocal rank fusion: one ranking from several, without comparing their scores.

Cosine similarity and ``ts_rank`` live on different scales, so hybrid search
fuses *ranks*: an item scores ``sum(1 / (k + rank))`` over the rankings it
appears in (Cormack et al., 2009). ``k = 60`` is the paper's constant: it damps
the first few ranks so that an item both retrievers like beats one that only
one retriever puts first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], *, k: int = RRF_K
) -> list[tuple[K, float]]:
    """Items of all ``rankings`` (each best first) by fused score, best first.

    Ties keep the order in which items were first seen, earlier rankings first,
    so the result is deterministic.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: position for position, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
