"""Direct payouts (直赔): one settlement answered at settlement time.

The settlement is adjudicated with the per-settlement face of the benefit calculator
against the policy and running accumulators the ledger holds, and recorded, all in one
``BEGIN IMMEDIATE`` transaction: two processes paying for the same person at once queue
on the ledger's write lock, so neither loses the other's deductible or limit use.
A settlement already decided is answered from the ledger and not paid again.

This path imports NumPy and pandas (about 0.2 s) and never pyarrow.parquet, statsmodels,
scikit-learn, SciPy or matplotlib (tested), so a direct payout starts fast.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from puhui.benefits.quantities import LineMatcher
from puhui.benefits.reasons import CODES
from puhui.benefits.reference import adjudicate_one
from puhui.claims import ledger
from puhui.errors import Conflict, InputError
from puhui.fund import privacy
from puhui.fund.schema import FIRST_DATE, LAST_DATE, MAX_SETTLEMENT_YUAN
from puhui.fund.validate import check_settlement_record
from puhui.products.model import Product

FUND = ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay")
AMOUNTS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "psn_part_amt", *FUND)
REQUIRED = ("setl_id", "psn_no", "setl_time", "med_type", "hosp_lv", "insutype", *AMOUNTS)
_MATCHERS: dict[str, LineMatcher] = {}


def _fen(v, what: str) -> int:
    """A JSON amount in yuan (a number, or a decimal string) as fen."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or \
            (isinstance(v, str) and not _DECIMAL.match(v)):
        raise InputError(f"settlement: {what} is not an amount in yuan ({_shape(v)}; the "
                         f"value is not shown)")
    try:
        f = float(v)
    except (ValueError, OverflowError):
        raise InputError(f"settlement: {what} is not an amount in yuan ({_shape(v)}; the "
                         f"value is not shown)") from None
    if not math.isfinite(f) or abs(f) > MAX_SETTLEMENT_YUAN:
        raise InputError(f"settlement: {what} is outside 0 to "
                         f"{MAX_SETTLEMENT_YUAN:,} yuan")
    fen = round(f * 100)
    if abs(f * 100 - fen) > 1e-6:
        raise InputError(f"settlement: {what} has more than two decimals")
    return fen


def _text(raw: dict, key: str) -> str:
    v = raw[key]
    if isinstance(v, bool) or not isinstance(v, (str, int)) or not str(v).strip():
        raise InputError(f"settlement: {key} must be a non-empty text or integer code, "
                         f"not {type(v).__name__}")
    if len(str(v).strip()) > MAX_ID_CHARS:
        raise InputError(f"settlement: {key} is longer than {MAX_ID_CHARS} characters")
    text = str(v).strip()
    # the token rule of fund files, on the value with only its spaces stripped (Python's
    # strip() also takes \x1c-\x1f, \x0b, \x0c away: "P1\x1f" would pass for "P1")
    if key in ("setl_id", "psn_no") and not privacy.is_token(str(v).strip(" ")):
        raise InputError(f"settlement: {key} must be a pseudonymous token (ASCII letters, "
                         f"digits and signs, no spaces or control characters); the value "
                         f"is not shown")
    return text


MAX_ID_CHARS = 64
_DECIMAL = re.compile(r"^\s*\d+(\.\d{1,2})?\s*$", re.ASCII)   # no full-width digits


def _day(raw: dict) -> dt.date:
    text = raw["setl_time"]
    try:
        if not isinstance(text, str) or not _DATE.match(text):
            raise ValueError
        day = dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise InputError(f"settlement: setl_time is not a date (YYYY-MM-DD): "
                         f"{_shape(raw['setl_time'])}; the value is not shown") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise InputError(f"settlement: setl_time {day} is outside {FIRST_DATE} to {LAST_DATE}")
    return day


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$", re.ASCII)


def _shape(v) -> str:
    """What a refused value is, never the value (a message must not echo personal data:
    a name typed into an amount field passes the guard of identifying fields)."""
    if isinstance(v, str):
        return f"a text of {len(v)} characters"
    return f"a {type(v).__name__}" if v is not None else "null"


def _known_fields(raw: dict) -> None:
    """Every key is a settlement field of the data contract (or ``lines``): a misspelt
    optional field (``line`` for ``lines``) would otherwise be dropped in silence."""
    import difflib

    from puhui.fund.schema import SETTLEMENTS

    known = {c.name for c in SETTLEMENTS.columns} | {"lines", "fund_pay_sumamt", "acct_pay",
                                                     "psn_cash_pay"}
    from puhui.fund.privacy import shown_name

    unknown = sorted(shown_name(k) for k in raw if k not in known)
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise InputError(f"settlement: unknown field(s) {', '.join(unknown)}"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + "; a settlement carries the data contract's settlement fields")


def _settlement(raw: Any) -> tuple[dict, list[dict]]:
    """The settlement of a request, checked: fields present and typed, amounts finite,
    non-negative, two decimals and within bounds, the contract's identities to the fen
    (medfee_sumamt = the funds' payments + psn_part_amt; psn_part_amt >= the out-of-list
    amounts), lines that add up to no more than the bill."""
    if not isinstance(raw, dict):
        raise InputError(f"settlement: a JSON object with the settlement fields is needed, "
                         f"not {type(raw).__name__ if raw is not None else 'null'}")
    missing = [k for k in REQUIRED if k not in raw or raw[k] is None]
    if missing:
        raise InputError(f"settlement: missing field(s) {', '.join(missing)}")
    _known_fields(raw)
    s = dict(raw)
    for k in ("setl_id", "psn_no", "med_type", "insutype"):
        s[k] = _text(raw, k)
    if raw.get("refund_of") not in (None, ""):
        raise InputError("settlement: refund_of is set: a reversal is sent to POST "
                         "/v1/reversal (or 'puhui claims direct', or in the data of a "
                         "claims run)")
    for k in AMOUNTS:
        s[k] = _fen(raw[k], k)
        if s[k] < 0:
            raise InputError(f"settlement: {k} is negative; a reversal (refund_of and "
                             f"the negated amounts) is sent to POST /v1/reversal")
    if s["medfee_sumamt"] != sum(s[k] for k in FUND) + s["psn_part_amt"]:
        raise InputError("settlement: medfee_sumamt is not hifp_pay + hifob_pay + hifmi_pay "
                         "+ maf_pay + psn_part_amt to the fen; send the settlement as the "
                         "platform settled it")
    if s["psn_part_amt"] < s["fulamt_ownpay_amt"] + s["overlmt_selfpay"]:
        raise InputError("settlement: psn_part_amt is less than fulamt_ownpay_amt + "
                         "overlmt_selfpay (the in-list self-pay would be negative)")
    if isinstance(raw["hosp_lv"], bool) or str(raw["hosp_lv"]).strip() not in ("1", "2", "3"):
        raise InputError(f"settlement: hosp_lv must be 1, 2 or 3 ({_shape(raw['hosp_lv'])}; "
                         f"the value is not shown)")
    s["hosp_lv"] = int(str(raw["hosp_lv"]).strip())
    s["setl_time"] = _day(raw)
    lines = _lines(raw.get("lines", []))
    if sum(ln["amount"] for ln in lines) > s["medfee_sumamt"]:
        raise InputError("settlement: the lines add up to more than medfee_sumamt")
    problems = check_settlement_record(raw)     # the bounds and identities validate applies
    if problems:
        raise InputError("settlement: " + "\n  ".join(problems))
    return s, lines


def _lines(raw_lines: Any) -> list[dict]:
    from puhui.fund.schema import LIST_CLASSES

    if raw_lines is None:
        return []
    if not isinstance(raw_lines, list):
        raise InputError("settlement: lines must be a list of objects")
    lines = []
    for i, ln in enumerate(raw_lines):
        if not isinstance(ln, dict) or "hilist_code" not in ln or "amount" not in ln:
            raise InputError(f"settlement: lines[{i}] needs hilist_code and amount")
        amount = _fen(ln["amount"], f"lines[{i}].amount")
        if amount < 0:
            raise InputError(f"settlement: lines[{i}].amount is negative")
        code, cls = ln["hilist_code"], ln.get("list_class", "self")
        if not isinstance(code, str) or not code.strip():
            raise InputError(f"settlement: lines[{i}].hilist_code must be a non-empty text")
        if cls not in LIST_CLASSES:
            raise InputError(f"settlement: lines[{i}].list_class is not one of "
                             f"{', '.join(LIST_CLASSES)}")
        lines.append({"hilist_code": code.strip(), "list_class": cls, "amount": amount})
    return lines


def _digest(s: dict, lines: list[dict]) -> str:
    """SHA-256 of a settlement as decided: every required field (amounts in fen, the date)
    and every line, in a canonical order."""
    import hashlib
    import json

    body = {k: (str(s[k]) if k == "setl_time" else s[k]) for k in REQUIRED}
    body["lines"] = sorted((ln["hilist_code"], ln["list_class"], ln["amount"]) for ln in lines)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _stored_row(s: dict) -> dict:
    """The settlement's fields as the ledger keeps them (:data:`ledger.STORED`)."""
    return {k: s[k] for k in ledger.STORED} | {"setl_time": str(s["setl_time"])}


def _stored_form(s: dict, lines: list[dict], matcher: LineMatcher) -> tuple[dict, list[dict]]:
    """The settlement as the ledger keeps it (:data:`ledger.STORED`, the lines on one of
    the product's lists), to compare with what it holds."""
    row = _stored_row(s)
    codes = matcher.codes
    kept = sorted(({"hilist_code": ln["hilist_code"], "list_class": ln["list_class"],
                    "amount": ln["amount"]} for ln in lines if ln["hilist_code"] in codes),
                  key=lambda d: (d["hilist_code"], d["list_class"], d["amount"]))
    return row, kept


def answer_of(setl_id: str, rows: list[tuple]) -> dict:
    """The explanation of benefit of decision rows (benefit, eligible, deductible,
    ratio_bp, payout, reason), amounts in yuan: what `claims direct` prints and the
    service answers."""
    benefits = [{"benefit": b, "eligible_amt": e / 100, "deductible_amt": d / 100,
                 "ratio": r / 10000, "payout_amt": p / 100, "reason": why}
                for b, e, d, r, p, why in rows]
    return {"setl_id": setl_id, "total_payout": round(sum(x["payout_amt"] for x in benefits), 2),
            "benefits": benefits}


def insurer_note(con, product: Product, setl_id: str) -> dict:
    """What each co-insurer of ``product`` has paid, net, for a settlement (its shares of
    the settlement's entries under the product's policies, ledger schema 7), in yuan:
    ``{"insurers": [{"id", "name", "share", "lead", "paid_amt"}]}`` lead first; ``{}``
    for a product without co-insurers (one insurer pays the whole)."""
    if not product.co_insurers:
        return {}
    paid = ledger.settlement_shares(con, setl_id, product.id)
    return {"insurers": [{"id": q.id, "name": q.name, "share": q.share_bp / 10_000,
                          "lead": q.lead, "paid_amt": paid.get(q.id, 0) / 100}
                         for q in sorted(product.co_insurers, key=lambda q: (not q.lead, q.id))]}


def direct_payout(product: Product, url: str, raw: dict[str, Any]) -> dict:
    """Adjudicate and record one settlement; return its explanation of benefit.

    A settlement already decided is answered from the ledger when it is the same
    settlement; sent again with other amounts, dates or lines under the same setl_id it
    is refused (a correction is a reversal and a new settlement). The settlement's
    inputs are kept in the ledger, so a batch whose data does not hold it yet still
    counts it (and keeps its payout) until data covering its date says otherwise."""
    s, lines = checked_settlement(raw)
    con = ledger.connect(url, must_exist=True)
    try:
        ledger.check_co_insurers(con, product)
        with ledger.unit_of_work(con, locks=settlement_locks(s)
                                 + ledger.group_locks(con, product),
                                 reads=decide_reads(product, s)):
            return decide(con, product, s, lines, record=True)
    finally:
        con.close()


def pay_or_reverse(product: Product, url: str, raw: dict[str, Any]) -> dict:
    """What ``claims direct`` does with one settlement (a JSON object, yuan): a
    reversal (``refund_of`` set) applied at once (:func:`puhui.claims.reverse.reverse_payout`),
    else a direct payout (:func:`direct_payout`); the explanation of benefit in yuan."""
    if isinstance(raw, dict) and raw.get("refund_of") not in (None, ""):
        from puhui.claims.reverse import reverse_payout

        return reverse_payout(product, url, raw)
    return direct_payout(product, url, raw)


def settlement_locks(s: dict) -> tuple[str, ...]:
    """What recording a settlement locks (:func:`puhui.claims.ledger.unit_of_work`): its
    person (their policies' accumulators and payments) and its id (its decisions, its
    stored inputs: one id sent for two people at once must not be decided twice)."""
    return (f"psn:{s['psn_no']}", f"setl:{s['setl_id']}")


def checked_settlement(raw: Any) -> tuple[dict, list[dict]]:
    """A request's settlement, guarded (no personal data; checked first, so no message
    echoes any) and checked against the data contract: (fields in fen and dates, lines)."""
    guard_settlement(raw)
    return _settlement(raw)


def decide_reads(product: Product, s: dict) -> list[tuple[str, tuple]]:
    """The reads :func:`decide` makes before it writes (a settlement that reaches the
    ledger), for :func:`puhui.claims.ledger.unit_of_work` to send with its locks: on
    PostgreSQL the payout is then two round trips, this and the writes with the
    COMMIT. A read left out is made when needed; one given and not made costs nothing
    but its answer."""
    reads = [ledger.policies_query(s["psn_no"], None),
             ledger.accumulators_of_person_query(s["psn_no"]),
             ledger.decisions_or_reversal_query(s["setl_id"], product.id)]
    if not product.co_insurers:          # :func:`_record` checks that none are registered
        reads.append(ledger.co_insurers_query(product.id))
    return reads


def decide(con, product: Product, s: dict, lines: list[dict], record: bool) -> dict:
    """The explanation of benefit of a checked settlement (:func:`checked_settlement`)
    against the ledger, inside the caller's transaction: recorded when ``record`` (the
    caller's unit of work holds the write lock), else only computed (a pre-settlement:
    what the product would pay now, nothing written). A settlement already decided is
    answered from the ledger (``already_decided``), or refused if sent with other
    inputs."""
    matcher = _MATCHERS.get(product.id) or _MATCHERS.setdefault(product.id, LineMatcher(product))
    if not ledger.has_policies(con, product.id):
        raise InputError(f"ledger: no policy of product {product.id}; load the policies "
                         f"with 'puhui ledger load --data DIR --ledger URL' (or check the "
                         f"product)")
    pol, renewal, mine = _policy_of(con, product, s)
    # the person's, not the policy's: one read the unit of work can send with its
    # locks (:func:`decide_reads`)
    state = ledger.accumulators_of_person(con, s["psn_no"]).get(pol["policy_no"], {}) \
        if pol else {}
    before = dict(state)                   # adjudicate_one updates ``state`` in place
    res = adjudicate_one(product, s, lines, pol, state, matcher=matcher,
                         renewal=renewal, has_any_policy=bool(mine))
    decided, a_reversal, hold, seen = ledger.decisions_or_reversal(con, s["setl_id"],
                                                                    product.id)
    if a_reversal:
        # review 19: a reversal's id taken again as a settlement's held the id twice
        raise Conflict(f"settlement {s['setl_id']}: this setl_id is a reversal the ledger "
                       f"applied; a settlement takes a setl_id of its own")
    done = in_product_order(product, decided)
    if done:
        _same_settlement(con, s, lines, matcher, done, res)
        return (answer_of(s["setl_id"], done) | {"already_decided": True} | held_note(hold)
                | insurer_note(con, product, s["setl_id"]))
    _not_decided_elsewhere(con, s, lines, seen)
    if hold is not None:
        # held for review by a batch's flags (session 21): nothing paid, nothing kept, so
        # once the hold is released the same settlement sent again is decided as new
        return held_answer(product, s["setl_id"], res, hold)
    if not record or pol is None:
        # no policy covers it (no policy of the product, or another date): nothing is due
        # and nothing is kept, as a batch keeps no decision for a settlement without a
        # policy, so a corrected resend (the right psn_no or date) is decided as new
        # (review 20: a typo's NO_POLICY made the correction a 409 for good)
        return answer_of(s["setl_id"], _rows(product, res)) | {"recorded": False}
    changed = {k: v for k, v in state.items() if before.get(k) != v}
    return _record(con, product, s, lines, pol, (changed, res, "stored" in seen))


def held_note(code: str | None) -> dict:
    """What an answer adds for a settlement held for review (nothing when not held)."""
    if code is None:
        return {}
    return {"held": {"reason": code, "detail": "held for review by a claims batch's fraud "
                     "or quality flags: nothing more is paid for it until the hold is "
                     "released ('puhui claims release')"}}


def held_answer(product: Product, setl_id: str, res: dict, code: str) -> dict:
    """The answer for a held settlement the ledger never decided: every benefit pays 0
    with the hold's code as its reason; nothing recorded."""
    rows = [(b, e, 0, r, 0, code) for b, e, _d, r, _p, _why in _rows(product, res)]
    return answer_of(setl_id, rows) | {"recorded": False} | held_note(code)


def in_product_order(product: Product, rows: list[tuple]) -> list[tuple]:
    """Decision rows (benefit first) in the product's order of benefits, as a first
    answer lists them (the ledger gives them by name); unknown benefits last."""
    at = {b.id: i for i, b in enumerate(product.benefits)}
    return sorted(rows, key=lambda r: (at.get(r[0], len(at)), r[0]))


def _rows(product: Product, res: dict) -> list[tuple]:
    """(benefit, eligible, deductible, ratio_bp, payout, reason) of each benefit."""
    return [(b.id, res[b.id]["eligible"], res[b.id]["deductible"], res[b.id]["ratio_bp"],
             res[b.id]["payout"], str(CODES[res[b.id]["reason"] - 1]))
            for b in product.benefits]


def _policy_of(con, product: Product, s: dict) -> tuple[dict | None, bool, list]:
    """The person's policy covering the settlement's date (the latest-starting if
    several), whether it renews another policy (of any product), and all the person's
    policies of the product."""
    every = ledger.policies_of(con, s["psn_no"], None)      # one read: all products'
    mine = [p for p in every if p["product_id"] == product.id]
    day = s["setl_time"]
    cover = [p for p in mine if dt.date.fromisoformat(p["start_date"]) <= day
             <= dt.date.fromisoformat(p["end_date"])]
    pol = max(cover, key=lambda p: p["start_date"]) if cover else None
    # a renewal continues any product's policy (last year's product id included)
    renewal = pol is not None and any(
        dt.date.fromisoformat(p["end_date"]) + dt.timedelta(days=1)
        == dt.date.fromisoformat(pol["start_date"])
        for p in every)
    return pol, renewal, mine


def _not_decided_elsewhere(con, s: dict, lines: list[dict], seen: set[str]) -> None:
    """Refuse a settlement this product never decided that a reversal refunded, that
    this product paid all the same (an upgraded ledger), or that another product
    decided with other inputs (review s22: with decisions kept per
    product, the second product paid a reversed settlement, and took one setl_id with
    another body, whose inputs then replaced the first's). Across products the lines
    are compared only through a direct payout's digest: each product keeps the lines on
    its own lists."""
    if "reversed" in seen:
        raise Conflict(f"settlement {s['setl_id']}: reversed (the ledger applied its "
                       f"reversal); a new settlement is sent under a new setl_id")
    if "paid" in seen:
        # a ledger upgraded to schema 5: another product's decision had replaced this
        # product's, whose payments stay
        raise Conflict(f"settlement {s['setl_id']}: paid under this product before the "
                       f"ledger kept decisions per product (schema 5), and its decision "
                       f"was not kept; nothing more is paid: see the batch's eob")
    held = ledger.stored_settlement(con, s["setl_id"]) if "stored" in seen else None
    if held is None:
        return
    same = held[2] == _digest(s, lines) if held[2] is not None else held[0] == _stored_row(s)
    if not same:
        raise Conflict(f"settlement {s['setl_id']}: already decided (under another "
                       f"product) with other amounts, dates or lines; a corrected "
                       f"settlement is sent as a reversal and a new settlement id")


def _same_settlement(con, s: dict, lines: list[dict], matcher: LineMatcher,
                     done: list[tuple], res: dict) -> None:
    """Refuse a settlement id already decided for other inputs: compared field by field
    with what the ledger kept of it, or (a batch keeps only settlements with something
    eligible) by the eligible amounts it decided."""
    if any(why == "REVERSED" for *_, why in done):
        raise Conflict(f"settlement {s['setl_id']}: reversed since it was decided; a new "
                       f"settlement is sent under a new setl_id")
    held = ledger.stored_settlement(con, s["setl_id"])
    if held is not None and held[2] is not None:         # a direct payout's whole request
        same = held[2] == _digest(s, lines)
    elif held is not None:                                # a batch's: the fields it keeps
        same = held[:2] == _stored_form(s, lines, matcher)
    else:
        decided = {b: e for b, e, *_ in done}
        same = all(decided.get(b, 0) == r["eligible"] for b, r in res.items())
    if not same:
        raise Conflict(f"settlement {s['setl_id']}: already decided with other amounts, "
                       f"dates or lines; a corrected settlement is sent as a reversal "
                       f"(claims run) and a new settlement id")


def _record(con, product: Product, s: dict, lines: list[dict], pol: dict | None,
            outcome: tuple[dict, dict, bool]) -> dict:
    """Record a decision: its rows, payments, stored inputs, the policy's accumulators
    that changed (only those are written) and the audit row. ``outcome``: (the changed
    accumulators, the calculator's result, whether the ledger kept inputs of this
    settlement before: where it did not, it has no lines of it to replace)."""
    changed, res, stored_before = outcome
    matcher = _MATCHERS[product.id]
    batch = ledger.direct_batch(product.id)
    # before the first write: the read sent with the BEGIN answers it (decide_reads)
    ledger.refuse_unsplit(con, product)
    ledger.ensure_open_batch(con, batch, "direct", product.id)
    rows, decided, entries = _rows(product, res), [], []
    stamp = ledger.now()
    pol_no = pol["policy_no"] if pol else None
    for b, eligible, deductible, ratio_bp, payout, why in rows:
        decided.append((s["setl_id"], b, s["psn_no"], pol_no, eligible, deductible, ratio_bp,
                        payout, why, batch))
        if payout:
            entries.append((s["setl_id"], s["setl_id"], b, s["psn_no"], pol_no, payout, "pay",
                            batch, stamp))
    ledger.record_decisions(con, decided, product.id)
    ledger.record_entries(con, entries, str(s["setl_time"]), product, unsplit_checked=True)
    row, kept = _stored_form(s, lines, matcher)
    ledger.store_settlements(con, [tuple(row.values())],
                             [(s["setl_id"], ln["hilist_code"], ln["list_class"], ln["amount"])
                              for ln in kept], batch, _digest(s, lines),
                             replaced=None if stored_before else [])
    if pol is not None and changed:
        ledger.update_accumulators(con, pol_no, changed)
    ledger.audit(con, "claims direct", batch, setl_id=s["setl_id"],
                 payout=sum(r[4] for r in rows))
    return answer_of(s["setl_id"], rows) | insurer_note(con, product, s["setl_id"])


def settlement_json(data: bytes, where: str) -> dict:
    """One settlement from JSON text (UTF-8), strictly: no NaN or Infinity (not amounts a
    bill has), no key given twice (which one would be meant?), an object; ``where``
    names the file or request in messages."""
    import json

    def no_constant(name):
        raise InputError(f"{where}: {name} is not an amount; give numbers")

    def one_each(pairs):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            from puhui.fund.privacy import shown_name

            raise InputError(f"{where}: field(s) given twice: "
                             f"{', '.join(shown_name(k) for k in twice)}; give each once")
        return dict(pairs)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte {exc.start}); save it as "
                         f"UTF-8") from None
    try:
        settlement = json.loads(text, parse_constant=no_constant, object_pairs_hook=one_each)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    except ValueError as exc:               # an integer of thousands of digits
        raise InputError(f"{where}: a number too long to be an amount or a code "
                         f"({str(exc)[:80]})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    if not isinstance(settlement, dict):
        raise InputError(f"{where}: one settlement is a JSON object "
                         f"({{\"setl_id\": ..., ...}}), not {type(settlement).__name__}")
    return settlement


def guard_settlement(raw: dict) -> None:
    """Nothing identifying may reach the ledger: psn_no and setl_id must be pseudonymous
    tokens, and no field may hold an ID number, a phone number, a name or an address
    (:func:`puhui.fund.privacy.identifying_fields`; the value is never shown)."""
    from puhui.fund.privacy import identifying_fields

    hits = identifying_fields(raw)
    if hits:
        where = ", ".join(f"{k} ({rule})" for k, rule in hits)
        raise InputError(f"settlement: {where} looks like personal data, which a direct "
                         f"payout must not carry (the value is not shown); send the "
                         f"pseudonymous ids of the anonymised data")
