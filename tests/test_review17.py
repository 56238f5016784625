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


def test_an_object_column_of_bytes_is_not_turned_into_text_by_the_spill(tmp_path):
    # Arrow casts bytes to text when asked for text: the spilled block gave back 'ab'
    # where the partition in memory holds b'ab' (a different value to every comparison
    # downstream). Bytes, alone or beside text, keep the partition in memory.
    for values in ([b"ab", None, b"cd", b"ef"], ["a", None, b"cd", "e"]):
        df = pd.DataFrame({"x": pd.Series(values, dtype=object), "y": [1, 2, 3, 4]})
        part = partition.Partition(df, np.array([0, 0, 1, 1]), 2)
        assert partition.spill(part, tmp_path) is None
        assert list(tmp_path.iterdir()) == []


def test_a_first_block_of_nulls_only_still_spills_an_object_text_column(tmp_path):
    # the file's schema is the first block's: nulls only must still be text there, or
    # every later block's text would not fit it
    df = pd.DataFrame({"x": pd.Series([None, None, "S1", np.str_("S2")], dtype=object)})
    part = partition.Partition(df, np.array([0, 0, 1, 1]), 2)
    sp = partition.spill(part, tmp_path)
    assert sp is not None
    for k in range(2):
        pd.testing.assert_frame_equal(sp[k], part[k])
    assert sp[1]["x"].tolist() == ["S1", "S2"]
