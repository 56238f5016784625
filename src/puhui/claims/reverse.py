"""Reversals answered at once (issue 20): ``POST /v1/reversal`` and ``puhui claims direct``
with a settlement that has ``refund_of``.

A reversal undoes a settlement the ledger decided (by a direct payout or a batch). The
rule is a batch's (:mod:`puhui.claims.batch`): the person's policy year is adjudicated
again in time order from the settlements the ledger stored for that policy, the
original left out, and what is due minus what was paid is written per settlement and
benefit as signed entries: the original's payout reversed (``reverse``, carrying the
reversal's setl_id), and ``adjust`` (or ``pay``) entries for the later settlements
whose deductible or limit use the reversal changed. The policy's accumulators are
rewritten to the new state, the original's decisions say REVERSED, its stored inputs
are forgotten, and the reversal is recorded in ``reversals`` (a later batch whose data
holds the reversal, or only the original, moves nothing).

Each reversal answered here writes into a batch of its own, ``"reversal <setl_id>"``
(a batch id a user cannot give: it has a space), so two reversals adjusting the same
later settlement each keep their entry.

The pure rule (:func:`readjudicate`, :func:`due_entries`) takes plain values; the
database work is :func:`apply_reversal`, inside the caller's unit of work holding
:func:`reversal_locks`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from puhui.benefits.kept import kept_by_policy
from puhui.benefits.quantities import LineMatcher
from puhui.benefits.reasons import CODES
from puhui.benefits.reference import adjudicate_one
from puhui.claims import ledger
from puhui.claims.direct import (AMOUNTS, FUND, MAX_ID_CHARS, _MATCHERS, _day, _fen,
                                 _known_fields,
                                 _policy_of, _text, guard_settlement)
from puhui.errors import Conflict, InputError, Unprocessable
from puhui.fund import privacy
from puhui.products.model import Product

#: What a reversal must carry: its id, the original's, the person, its date, and the
#: three amounts the ledger keeps of every settlement, each the original's negated.
REQUIRED = ("setl_id", "refund_of", "psn_no", "setl_time", "psn_part_amt",
            "fulamt_ownpay_amt", "overlmt_selfpay")
#: Checked against the ledger's copy of the original (to the fen, negated).
CHECKED_AMOUNTS = ("psn_part_amt", "fulamt_ownpay_amt", "overlmt_selfpay")
#: Decisions whose payout a batch leaves alone (not claimed, no consent): a reversal
#: does not pay them either.
LEFT = ("NOT_CLAIMED", "NO_CONSENT")
BATCH_PREFIX = "reversal "


def batch_of(setl_id: str) -> str:
    """The batch a reversal answered at once writes into."""
    return BATCH_PREFIX + setl_id


# the request ------------------------------------------------------------------------
def checked_reversal(raw: Any) -> dict:
    """A reversal of a request, guarded (no personal data) and checked on its own: the
    fields of :data:`REQUIRED` present and typed, every amount given zero or negative
    with two decimals, the contract's identity where all its amounts are given; the
    other settlement fields (med_type, hosp_lv, insutype, ...) may be given and are
    compared with the original's. Amounts in fen, the date as a date."""
    if not isinstance(raw, dict):
        raise InputError(f"reversal: a JSON object with the reversal's fields is needed, "
                         f"not {type(raw).__name__ if raw is not None else 'null'}")
    guard_settlement(raw)
    missing = [k for k in REQUIRED if raw.get(k) in (None, "")]
    if missing:
        raise InputError(f"reversal: missing field(s) {', '.join(missing)} (a reversal "
                         f"carries {', '.join(REQUIRED)})")
    _known_fields(raw)
    if raw.get("lines"):
        raise InputError("reversal: lines are not taken; a reversal undoes its original "
                         "whole (its lines with it)")
    r: dict = {k: _text(raw, k) for k in ("setl_id", "psn_no")}
    r["refund_of"] = _original_id(raw["refund_of"])
    if r["refund_of"] == r["setl_id"]:
        raise InputError("reversal: refund_of names the reversal itself; give the setl_id "
                         "of the settlement it reverses")
    r["setl_time"] = _day(raw)
    for k in AMOUNTS:
        if raw.get(k) is not None:
            r[k] = _negated(raw[k], k)
    if all(k in r for k in AMOUNTS) and \
            r["medfee_sumamt"] != sum(r[k] for k in FUND) + r["psn_part_amt"]:
        raise InputError("reversal: medfee_sumamt is not hifp_pay + hifob_pay + hifmi_pay "
                         "+ maf_pay + psn_part_amt to the fen; send the original's amounts "
                         "negated")
    for k in ("med_type", "insutype"):
        if raw.get(k) is not None:
            r[k] = _text(raw, k)
    if raw.get("hosp_lv") is not None:
        r["hosp_lv"] = str(raw["hosp_lv"]).strip()
    return r


def _original_id(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int)) or len(str(v).strip()) > MAX_ID_CHARS \
            or not privacy.is_token(str(v).strip(" ")):
        raise InputError("reversal: refund_of must be the setl_id of the original settlement "
                         "(a pseudonymous token); the value is not shown")
    return str(v).strip()


def _negated(v, what: str) -> int:
    """A reversal's amount in fen: zero or negative (a decimal text may carry its sign)."""
    if isinstance(v, str) and v.strip().startswith("-"):
        fen = -_fen(v.strip()[1:], what)
    else:
        fen = _fen(v, what)
    if fen > 0:
        raise InputError(f"reversal: {what} is positive; a reversal carries the original's "
                         f"amounts negated")
    return fen


def reversal_locks(r: dict) -> tuple[str, ...]:
    """What applying a reversal locks: the person (their accumulators and payments), the
    original (one original reversed by two ids at once is reversed once) and the
    reversal's id."""
    return (f"psn:{r['psn_no']}", f"setl:{r['refund_of']}", f"setl:{r['setl_id']}")


# the pure rule ----------------------------------------------------------------------
def readjudicate(product: Product, settlements: list[dict], lines: dict[str, list[dict]],
                 cover: tuple[dict, bool, bool], matcher: LineMatcher,
                 kept: dict[str, int] | None = None
                 ) -> tuple[list[tuple[str, dict]], dict[str, int]]:
    """Adjudicate one policy's settlements in the order given (time order), from
    nothing used but ``kept`` (the accumulators' use of the policy's settlements held
    for review, which keep what they were paid: :func:`puhui.benefits.kept.kept_uses`,
    counted before the others): [(setl_id, the calculator's result per benefit)] and
    the policy's accumulators after them. ``cover``: (the policy, renews another, the
    person has any policy of the product)."""
    pol, renewal, has_any = cover
    state: dict[str, int] = dict(kept or {})
    out = []
    for s in settlements:
        res = adjudicate_one(product, s, lines.get(s["setl_id"], []), pol, state,
                             matcher=matcher, renewal=renewal, has_any_policy=has_any)
        out.append((s["setl_id"], res))
    return out, state


def due_entries(benefits: list[str], results: list[tuple[str, dict]],
                paid: dict[tuple[str, str], int], original: str, reversal: str,
                left: set[tuple[str, str]] = frozenset()) -> list[tuple[str, str, str, int, str]]:
    """Target minus paid as entries (setl_id, applies_to, benefit, fen, kind): the
    original's target is 0 (``reverse``, under the reversal's id); each other
    settlement's is its payout in ``results`` (``pay`` where nothing was paid, else
    ``adjust``); ``left`` pairs (not claimed, no consent) get none."""
    out = [(reversal, original, b, -paid[(original, b)], "reverse")
           for b in benefits if paid.get((original, b), 0)]
    for sid, res in results:
        for b in benefits:
            before = paid.get((sid, b), 0)
            diff = res[b]["payout"] - before
            if diff and (sid, b) not in left:
                out.append((sid, sid, b, diff, "adjust" if before else "pay"))
    return out


# against the ledger -----------------------------------------------------------------
def apply_reversal(con, product: Product, r: dict) -> tuple[dict, bool]:
    """Apply a checked reversal (:func:`checked_reversal`) inside the caller's unit of
    work (holding :func:`reversal_locks`): (its answer, whether it was applied now). One
    the ledger applied before (here or by a batch) is answered from the ledger."""
    before = _applied_before(con, product, r)
    if before is not None:
        return before, False
    _, pol, renewal, mine = _original(con, product, r)
    matcher = _MATCHERS.get(product.id) or _MATCHERS.setdefault(product.id, LineMatcher(product))
    stored, lines = ledger.stored_of_person(con, r["psn_no"], pol["start_date"], pol["end_date"])
    policy_year = [_engine_form(s) for s in stored if s["setl_id"] != r["refund_of"]
                   and _covering(mine, s["setl_time"]) == pol["policy_no"]]
    # only what this product decided (review s22: a settlement only another product was
    # asked about was paid here)
    ours = ledger.decided_or_paid_by(con, [s["setl_id"] for s in policy_year], product.id,
                                     pol["policy_no"])
    policy_year = [s for s in policy_year if s["setl_id"] in ours]
    # held for review by a batch's flags (session 21): keeps what it was paid before the
    # hold, as a batch keeps it, until released, and counts in the deductible and limits
    # at what it keeps (puhui.benefits.kept), before the others; it is not adjudicated
    held = held_of_policy(ledger.holds_of_person(con, r["psn_no"]),
                          [(s["setl_id"], s) for s in policy_year])
    kept = kept_by_policy(product, ledger.kept_of(con, sorted(held))).get(pol["policy_no"], {})
    others = [s for s in policy_year if s["setl_id"] not in held]
    results, state = readjudicate(product, others, lines, (pol, renewal, bool(mine)), matcher,
                                  kept)
    ids = [r["refund_of"], *(sid for sid, _ in results)]
    paid = ledger.paid_by_benefit(con, ids, product.id)
    reasons = ledger.decision_reasons_of(con, [sid for sid, _ in results], product.id)
    benefits = [b.id for b in product.benefits]
    left = {k for k, why in reasons.items() if why in LEFT}
    entries = due_entries(benefits, results, paid, r["refund_of"], r["setl_id"], left)
    _write(con, product, r, pol, (results, state, entries, reasons, held))
    return _answer(con, product, r, batch_of(r["setl_id"]), True), True


def held_of_policy(holds: dict[str, str], settlements: list[tuple[str, dict]]) -> dict[str, str]:
    """{setl_id: code} of the policy year's settlements ((setl_id, anything) pairs) held
    for review (pure)."""
    return {sid: holds[sid] for sid, _ in settlements if sid in holds}


def _applied_before(con, product: Product, r: dict) -> dict | None:
    """The answer of this reversal if the ledger applied it; a conflict if its id or
    its original is taken otherwise."""
    rid, orig = r["setl_id"], r["refund_of"]
    done = ledger.reversal_by_id(con, rid)
    if done is not None:
        if (done[0], done[1]) != (orig, r["psn_no"]):
            raise Conflict(f"reversal {rid}: this setl_id was applied already as the "
                           f"reversal of another settlement (or person); a reversal takes "
                           f"a new setl_id")
        if done[3] is not None and done[3] != product.id:
            # session 22: answering it as applied showed the other product's entries
            # while what this product paid for the original stayed paid
            raise Unprocessable(
                f"reversal {rid}: applied already under {done[3]}; a settlement is "
                f"reversed at once under one product. What {product.id} paid for {orig} "
                f"is taken back by its next claims run on data holding the reversal")
        answer = _answer(con, product, r, done[2], done[2] == batch_of(rid))
        return answer | {"already_applied": True}
    other = ledger.reversal_of_original(con, orig)
    if other is not None:
        raise Conflict(f"reversal {rid}: settlement {orig} was reversed already by "
                       f"another reversal; a settlement is reversed once")
    if ledger.decided_by_any(con, rid):
        raise Conflict(f"reversal {rid}: this setl_id is a settlement the ledger decided; "
                       f"a reversal takes a setl_id of its own")
    return None


def _original(con, product: Product, r: dict) -> tuple[dict, dict, bool, list]:
    """The original as the ledger stored it, checked against the reversal; its policy
    (of this product), whether that renews another, the person's policies."""
    orig = r["refund_of"]
    done = ledger.decisions_of(con, orig, product.id)
    held = ledger.stored_settlement(con, orig)
    if not done:
        raise Unprocessable(f"reversal {r['setl_id']}: refund_of names no settlement this "
                            f"ledger decided; a settlement not decided here is reversed in "
                            f"the data of a claims run, or not at all")
    if held is None:
        why = ("a batch took it back as not in its data" if any(
            d[-1] == "NOT_IN_DATA" for d in done) else "nothing of it was eligible, so "
            "nothing was paid or counted")
        raise Unprocessable(f"reversal {r['setl_id']}: the ledger kept no inputs of the "
                            f"original ({why}); there is nothing to reverse")
    s = held[0]
    if s["psn_no"] != r["psn_no"]:
        raise Unprocessable(f"reversal {r['setl_id']}: refund_of names another person's "
                            f"settlement; a reversal has its original's psn_no")
    _same_amounts(r, s)
    if r["setl_time"] < dt.date.fromisoformat(s["setl_time"]):
        raise Unprocessable(f"reversal {r['setl_id']}: setl_time is before the original's; "
                            f"date the reversal on or after the original settlement")
    pol, renewal, mine = _policy_of(con, product, {"psn_no": s["psn_no"],
                                                   "setl_time": dt.date.fromisoformat(
                                                       s["setl_time"])})
    if pol is None or not ledger.decision_policies(con, orig, product.id) <= {pol["policy_no"]}:
        raise Unprocessable(f"reversal {r['setl_id']}: the original was not decided under "
                            f"the policy of {product.id} covering its date; reverse it with "
                            f"the product that paid it")
    if ledger.unstored_decided_of_policy(con, s["psn_no"], pol["policy_no"]):
        raise Unprocessable(f"reversal {r['setl_id']}: the ledger holds settlements of this "
                            f"policy decided by an earlier puhui (ledger schema 1) without "
                            f"their amounts; run one batch on data holding the policy year "
                            f"first (it keeps them)")
    return s, pol, renewal, mine


def _same_amounts(r: dict, s: dict) -> None:
    """The reversal's amounts are the original's negated, to the fen, and its other
    fields, where given, the original's."""
    wrong = [k for k in CHECKED_AMOUNTS if r[k] != -int(s[k])]
    if wrong:
        raise Unprocessable(f"reversal {r['setl_id']}: {', '.join(wrong)} not the "
                            f"original's amount negated to the fen; send the original's "
                            f"amounts with the opposite sign (the values are not shown)")
    other = [k for k in ("med_type", "insutype", "hosp_lv") if k in r and
             str(r[k]) != str(s[k])]
    if other:
        raise Unprocessable(f"reversal {r['setl_id']}: {', '.join(other)} not the "
                            f"original's; a reversal repeats its original's fields")


def _covering(mine: list[dict], day: str) -> str | None:
    """The policy covering a date (the latest-starting if several), as a direct payout
    and the batch choose it."""
    cover = [p for p in mine if p["start_date"] <= day <= p["end_date"]]
    return max(cover, key=lambda p: p["start_date"])["policy_no"] if cover else None


def _engine_form(s: dict) -> dict:
    return s | {"setl_time": dt.date.fromisoformat(s["setl_time"]),
                "hosp_lv": int(s["hosp_lv"])}


def _write(con, product: Product, r: dict, pol: dict, plan: tuple) -> None:
    """The reversal's entries, decisions, accumulators, forgotten original and record."""
    results, state, entries, reasons, held = plan
    batch, stamp, pol_no = batch_of(r["setl_id"]), ledger.now(), pol["policy_no"]
    ledger.ensure_open_batch(con, batch, "reversal", product.id)
    ledger.record_entries(con, [(sid, a, b, r["psn_no"], pol_no, fen, kind, batch, stamp)
                                for sid, a, b, fen, kind in entries], str(r["setl_time"]),
                          product)
    rows = [(r["refund_of"], b.id, r["psn_no"], None, 0, 0, 0, 0, "REVERSED", batch)
            for b in product.benefits]
    # a held settlement is not among the results: its decision stays what it was paid under
    for sid, res in results:
        for b in product.benefits:
            x = res[b.id]
            why = reasons.get((sid, b.id))
            why = why if why in LEFT else str(CODES[x["reason"] - 1])
            rows.append((sid, b.id, r["psn_no"], pol_no, x["eligible"], x["deductible"],
                         x["ratio_bp"], x["payout"], why, batch))
    ledger.record_decisions(con, rows, product.id)
    old = ledger.accumulators_of(con, pol_no)
    ledger.update_accumulators(con, pol_no, {k: state.get(k, 0) for k in old | state})
    ledger.forget_settlements(con, [r["refund_of"]], product.id)
    ledger.record_reversals(con, [(r["setl_id"], r["refund_of"], r["psn_no"])], batch)
    ledger.audit(con, "claims reverse", batch, setl_id=r["setl_id"],
                 refund_of=r["refund_of"], fen=sum(e[3] for e in entries),
                 held=sorted(held))


def _answer(con, product: Product, r: dict, batch: str, whole_batch: bool) -> dict:
    """What a reversal answers: its id, the original, the entries it wrote (yuan,
    signed, in the order written) and the person's net paid under the product now."""
    rows = ledger.reversal_entries(con, r["setl_id"], batch, whole_batch)
    entries = [{"setl_id": s, "applies_to": a, "benefit": b, "kind": k,
                "payout_amt": fen / 100} for s, a, b, fen, k in rows]
    if product.co_insurers:       # each co-insurer's share of each entry (schema 7)
        shares = ledger.batch_entry_shares(con, batch, None if whole_batch else r["setl_id"])
        for e in entries:
            e["shares"] = {i: fen / 100 for i, fen in
                           shares.get((e["setl_id"], e["applies_to"], e["benefit"]), {}).items()}
    return {"setl_id": r["setl_id"], "refund_of": r["refund_of"], "batch": batch,
            "entries": entries,
            "total_amt": round(sum(fen for *_, fen, _k in rows) / 100, 2),
            "net_payout_amt": ledger.net_paid_of(con, r["psn_no"], product.id) / 100,
            **_held_list(con, r["psn_no"])}


def _held_list(con, psn_no: str) -> dict:
    """The person's settlements held for review (their codes): a reversal adjusts none of
    them (listed only when there are any, so other answers keep their shape)."""
    holds = ledger.holds_of_person(con, psn_no)
    return {"held": [{"setl_id": sid, "reason": why} for sid, why in sorted(holds.items())]} \
        if holds else {}


def reverse_payout(product: Product, url: str, raw: dict[str, Any]) -> dict:
    """Apply one reversal to the ledger at ``url`` (``claims direct`` with a settlement
    that has refund_of): its answer, ``already_applied`` when the ledger had it."""
    r = checked_reversal(raw)
    con = ledger.connect(url, must_exist=True)
    try:
        ledger.check_co_insurers(con, product)
        with ledger.unit_of_work(con, locks=reversal_locks(r) + ledger.group_locks(con, product)):
            return apply_reversal(con, product, r)[0]
    finally:
        con.close()

