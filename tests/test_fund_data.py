"""Pricing's reading of the fund data (puhui.pricing.fund_data): chunks of row groups
validated as they are read, only the settlements pricing can use kept, the experience
in blocks of people; the figures equal those of the whole data."""

import json

import numpy as np
import pandas as pd
import pytest
from fastparquet import write

import puhui.pricing.experience as ex
from puhui.fund.files import read_fund, read_raw
from puhui.fund.schema import SETTLEMENTS
from puhui.pricing.fund_data import load_for_pricing
from puhui.pricing.premium import AFTER_EXPERIENCE, load_assumptions, price
from puhui.products.model import load_product, product_path

PRODUCT = load_product(product_path("huhuibao-2025"))


@pytest.fixture(scope="module")
def chunked_city(small_city_dir, tmp_path_factory):
    """The small city with settlements.parquet in row groups of 500 rows."""
    import shutil

    d = tmp_path_factory.mktemp("chunked") / "city"
    shutil.copytree(small_city_dir, d)
    st = read_raw(d, SETTLEMENTS)
    write(str(d / SETTLEMENTS.file), st, write_index=False, row_group_offsets=500)
    return d


def test_experience_in_blocks_equals_one_block(small_city_dir):
    d = read_fund(small_city_dir)
    one, one_ev = ex.experience(PRODUCT, d, events=True)
    for workers in (1, 2):
        blocks, blocks_ev = ex.experience_in_blocks(PRODUCT, d, block_persons=97,
                                                     workers=workers)
        # the same tables, with people, years and ages held narrow
        pd.testing.assert_frame_equal(ex._narrow(one), blocks)
        pd.testing.assert_frame_equal(ex._narrow(one_ev), blocks_ev)
        assert blocks["person"].dtype == np.int32 and blocks_ev["year"].dtype == np.int16
        assert (blocks["age"].to_numpy() == one["age"].to_numpy()).all()


def test_pricing_the_kept_settlements_gives_the_figures_of_the_whole(chunked_city,
                                                                     monkeypatch):
    assumptions, _ = load_assumptions(None)
    whole = read_fund(chunked_city)
    kept = load_for_pricing(chunked_city, PRODUCT, assumptions, chunk_rows=1200)
    assert len(kept.settlements) < 0.5 * len(whole.settlements)
    assert kept.settlement_years == (2024, 2025)
    assert "refund_of" not in kept.settlements.columns
    a = price(PRODUCT, whole, assumptions, seed=3).figures
    monkeypatch.setattr(ex, "BLOCK_PERSONS", 150)        # four blocks of people
    # as `puhui price` runs it: the settlements' columns let go after the experience
    b = price(PRODUCT, kept, assumptions, seed=3, release_data=True).figures
    assert set(kept.settlements.columns) <= set(AFTER_EXPERIENCE)
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                     default=str)
    assert a["pure_premium"]["total"] > 0
