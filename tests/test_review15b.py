"""Review 15b (hostile review of the late changes of session 15): each test here failed
on 288f651 and shows one problem with a minimal reproduction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from puhui.errors import InputError


# --- 2. control characters in ids: claims direct and the file check must agree ---------

@pytest.mark.parametrize("value", ["P1\x1f", "\x1cP1", "P1\x0b", "S9\x0c"])
def test_direct_refuses_an_id_with_a_control_character_at_its_end(value):
    """A file whose psn_no is "P1\\x1f" is refused (privacy: not a pseudonymous token);
    claims direct strips the value first (str.strip() eats \\x1c-\\x1f, \\v, \\f) and
    takes it as "P1": the control character makes "P1\\x1f" pass for "P1", which the
    change meant to stop, and the two paths disagree on the same value."""
    import puhui.claims.direct as direct
    from puhui.fund.privacy import scan_values

    assert scan_values("psn_no", pd.Series([value]))       # the file check refuses it
    with pytest.raises(InputError, match="pseudonymous token"):
        direct._text({"psn_no": value}, "psn_no")


# --- 3. _factorize_text is pd.factorize for any ids ------------------------------------

def test_factorize_text_falls_back_on_text_arrow_cannot_encode():
    """A lone surrogate (json.loads('"\\\\ud800"') makes one) is text pd.factorize codes;
    Arrow's conversion raises UnicodeEncodeError, which is not caught: a traceback
    instead of the fallback the docstring promises."""
    from puhui.fund.validate import _factorize_text

    values = np.array(["P1", "\ud800", "P1"], dtype=object)
    codes, uniques = _factorize_text(values)
    want_codes, want_uniques = pd.factorize(values)
    assert codes.tolist() == want_codes.tolist() and list(uniques) == list(want_uniques)


def test_factorize_text_keeps_bytes_apart_from_text():
    """pd.factorize keeps b"P1" and "P1" apart (two ids); Arrow's string conversion
    decodes the bytes, so they become one id and the uniques lose their type."""
    from puhui.fund.validate import _factorize_text

    values = np.array(["P1", b"P1", "P2"], dtype=object)
    codes, uniques = _factorize_text(values)
    want_codes, want_uniques = pd.factorize(values)
    assert codes.tolist() == want_codes.tolist()
    assert [repr(u) for u in uniques] == [repr(u) for u in want_uniques]


# --- 5. a reversal the ledger applied, met again ---------------------------------------

# test_money_safety's city (400 people, 2025, settlements before December), the fixture
# itself: one definition
from test_money_safety import city  # noqa: E402,F401


def test_an_applied_reversal_met_again_under_another_person_is_not_a_reversal(city,
                                                                               tmp_path):
    """November's extract reverses P's October settlement (the original only in the
    ledger); batch 'nov' applies it. A later extract holds the same reversal setl_id and
    refund_of but another psn_no. The new shortcut (ledger.known_reversals names this
    very reversal for this original) takes it as applicable without the checks of
    person, date and amounts, so the EOB reports a REVERSAL for a person whose
    settlement it never was (status 'reversed', reason REVERSAL, on Q's row). Before
    the shortcut it was quarantined (Q_UNKNOWN_REVERSAL): the person differs."""
    from puhui.claims.batch import run_batch
    from puhui.fund.files import read_raw
    from puhui.fund.schema import SETTLEMENTS
    from test_money_safety import (PRODUCT, _copy_fund, _november_reverses_october,
                                   net_by_person)

    url, first, sid, rev, extract = _november_reverses_october(
        city, tmp_path, lambda name: f"sqlite:///{tmp_path / (name + '.db')}")
    run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    net = net_by_person(url)
    st = read_raw(extract, SETTLEMENTS)
    i = st.index[st["setl_id"] == "R-" + sid][0]
    owner = st.loc[i, "psn_no"]
    st.loc[i, "psn_no"] = st.loc[st["psn_no"] != owner, "psn_no"].iloc[0]
    other = _copy_fund(extract, tmp_path / "other", st)
    res = run_batch(PRODUCT, PRODUCT.path, other, url, "nov-other")
    assert net_by_person(url) == net and res.summary["eob_matches_ledger"]   # held
    mine = res.eob[res.eob["setl_id"] == "R-" + sid]
    assert "REVERSAL" not in set(mine["reason"]), mine[["psn_no", "status", "reason"]]


def test_a_used_reversal_id_naming_another_original_is_a_conflict(city, tmp_path):
    """Batch 'nov' applied R-<sid> as the reversal of <sid>. A later extract holds
    R-<sid> again, now reversing another October settlement <sid2> of the ledger (its
    amounts negated). A settlement id already used with other contents is a conflict
    elsewhere (Q_IDENTITY: test_a_corrected_settlement_under_a_used_id_is_a_conflict;
    R-<sid> with other amounts is one too), but here the batch applies it: it takes
    <sid2>'s payout back and the ledger's reversals now say R-<sid> reversed two
    settlements. Money moves on an id whose meaning changed; expected: quarantined,
    nothing moves."""
    from puhui.claims.batch import run_batch
    from puhui.fund.files import read_raw
    from puhui.fund.schema import SETTLEMENT_LINES, SETTLEMENTS
    from test_money_safety import (PRODUCT, _copy_fund, _november_reverses_october,
                                   _reversal_of, net_by_person)

    url, first, sid, rev, extract = _november_reverses_october(
        city, tmp_path, lambda name: f"sqlite:///{tmp_path / (name + '.db')}")
    run_batch(PRODUCT, PRODUCT.path, extract, url, "nov")
    net = net_by_person(url)
    st = read_raw(city, SETTLEMENTS)
    lines = read_raw(city, SETTLEMENT_LINES)
    o = first.eob.merge(st[["setl_id", "setl_time"]], on="setl_id")
    o = o[(o["payout_amt"] > 0) & (o["setl_time"].dt.month == 10) & (o["setl_id"] != sid)
          & ~o["setl_id"].isin(set(lines["setl_id"]))]
    sid2 = o["setl_id"].iloc[0]
    rev2 = _reversal_of(st, sid2).assign(setl_id="R-" + sid,
                                         setl_time=pd.Timestamp("2025-11-20"))
    nov = read_raw(extract, SETTLEMENTS)
    nov = nov[nov["setl_id"] != "R-" + sid]
    again = _copy_fund(extract, tmp_path / "again", pd.concat([nov, rev2], ignore_index=True))
    res = run_batch(PRODUCT, PRODUCT.path, again, url, "nov-b")
    assert res.summary["eob_matches_ledger"]                                   # held
    assert net_by_person(url) == net, res.eob[res.eob["setl_id"] == "R-" + sid]
