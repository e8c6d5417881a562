"""The folders the test stacks' workers may read local-file sources from.

Workers refuse local paths outside LOCAL_SOURCE_ROOT (none by default), so a
stack whose tests feed it local files names these: the repository's testdata
and the system temp dir (pytest's tmp_path, generated corpora).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

TEST_SOURCE_ROOTS: tuple[Path, ...] = (
    Path(__file__).resolve().parents[2] / "testdata",
    Path(tempfile.gettempdir()),
)
