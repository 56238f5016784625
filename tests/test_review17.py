"""Hostile review of the claims batch's spilled blocks (session 17, issue 19)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.claims import partition


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"setl_id": pd.Series([f"S{i}" for i in range(n)], dtype="string[pyarrow]"),
                         "amt": np.arange(n, dtype=np.int64)})


def test_a_batch_killed_while_it_writes_its_blocks_leaves_no_file_behind(tmp_path,
                                                                          monkeypatch):
    # kill -9 during the spill (seconds at ten million settlements) left a
    # puhui-blocks-*.arrow file of the whole table in TMPDIR: it was unlinked only once
    # written. Whatever is in the folder while the blocks are written is what a kill
    # leaves there.
    seen = []
    real = partition._block_batch

    def watched(part, kinds, k):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real(part, kinds, k)

    monkeypatch.setattr(partition, "_block_batch", watched)
    df = _frame(60)
    part = partition.Partition(df, np.arange(60) % 5, 5)
    sp = partition.spill(part, tmp_path)
    assert len(seen) == 5 and seen == [[]] * 5
    for k in range(5):
        pd.testing.assert_frame_equal(sp[k], part[k])
    assert list(tmp_path.iterdir()) == []
