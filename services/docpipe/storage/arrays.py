"""The on-store format of embedding matrices: float32 ``.npy``.

``.npy`` keeps shape and dtype with the bytes, so the reader never guesses
the dimension, and numpy reads it without pickling anything.
"""

from __future__ import annotations

import io

import numpy as np


def to_npy(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
