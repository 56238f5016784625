"""The one definition of the fund-data files (docs/data-schema.md is generated from it).

Validation, the generator, the readers and ``docs/data-schema.md`` all take their
columns, types, units, codes and rules from the tables here. Change a column here and
everything else follows.

Kinds
-----
``string``  text (pseudonymous ids, codes)
``code``    text from a closed set of codes (``codes`` lists them)
``int``     whole number
``bool``    true / false
``date``    a Parquet timestamp at midnight or a Parquet date
``money``   yuan with two decimals in files; integer fen (``int64``) once read
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from puhui.basis import FIRST_DATE as BASIS_FIRST_DATE
from puhui.basis import LAST_DATE as BASIS_LAST_DATE

#: National medical-type codes accepted in ``med_type`` (national platform code list):
#: 11 general outpatient, 12 registration, 13 emergency, 14 chronic/special-disease
#: outpatient, 16 day surgery outpatient, 19 other outpatient, 21 general inpatient,
#: 22 injury inpatient, 23 transferred-out inpatient, 24 emergency-to-inpatient,
#: 41 designated-pharmacy purchase, 51 maternity outpatient, 52 maternity inpatient.
MED_TYPES = ("11", "12", "13", "14", "16", "19", "21", "22", "23", "24", "41", "51", "52")
OUTPATIENT_MED_TYPES = ("11", "12", "13", "14", "16", "19", "41", "51")
INPATIENT_MED_TYPES = ("21", "22", "23", "24", "52")
INSUTYPES = ("310", "390")
GENDERS = ("1", "2")
LIST_CLASSES = ("A", "B", "C", "self")

#: Settlement money columns, in the order of the national record.
SETTLEMENT_MONEY = (
    "medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
    "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay",
    "psn_part_amt",
)
#: The payers whose sum with the person's share is the whole bill (the identity).
FUND_PAYMENTS = ("hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay")
#: Parts of a settlement's bill: none exceeds its total, medfee_sumamt (not on reversals).
SETTLEMENT_PARTS = tuple(c for c in SETTLEMENT_MONEY if c != "medfee_sumamt")

# --- Bounds: the plausible range of every amount and date -------------------------------
#
# A value outside is refused by ``puhui validate`` (exit 2), quarantined by a claims
# batch and refused by ``claims direct``; one definition, here.
#
#: Largest amount, yuan, in any money column of a settlement or settlement line (and the
#: negative of it on a reversal): 100 million yuan. Real single settlements stay below a
#: few million yuan (CAR-T costs about 1.2 million; a long ICU stay a few million), so
#: this refuses only corrupt or mistyped amounts (fen written as yuan, a wrong unit),
#: and it is far inside the engines' integer arithmetic: 10^10 fen times a ratio of 10,000 basis points is 10^14, 92,000
#: times below the int64 limit (9.2 * 10^18), and a person's running sum in fen reaches
#: the limit only after 9 * 10^8 settlements at the bound in one policy year.
MAX_SETTLEMENT_YUAN = 100_000_000
MAX_SETTLEMENT_FEN = MAX_SETTLEMENT_YUAN * 100
#: Largest premium, yuan (a Huiminbao premium is tens to a few hundred yuan; a lifetime
#: elderly cover a few thousand).
MAX_PREMIUM_YUAN = 1_000_000
#: Earliest and latest date accepted in any date column. An "open" end date such as
#: 9999-12-31 is refused (a Huiminbao policy runs one year: give its real last day).
FIRST_DATE, LAST_DATE = BASIS_FIRST_DATE, BASIS_LAST_DATE     # one definition (puhui.basis)
#: January 1970, the Unix epoch's month: where a timestamp written in the wrong unit lands
#: (seconds read as milliseconds: 2025 reads as 1970-01-01 00:29; microseconds as
#: nanoseconds: 1970-01-21). Inside the bounds, but no real date of fund data.
EPOCH_MONTH = (dt.date(1970, 1, 1), dt.date(1970, 1, 31))
#: Earliest birth year; the latest is the current year (:data:`CURRENT_YEAR`).
FIRST_BIRTH_YEAR = 1900
#: ``max_value`` of a year column that may not lie in the future: the year of the day the
#: data is checked.
CURRENT_YEAR = "current year"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    meaning: str
    nullable: bool = False
    codes: tuple[str, ...] | None = None
    #: the range of a value: a number (int columns; money columns in yuan), a date (date
    #: columns) or :data:`CURRENT_YEAR`; ``None`` for no bound
    min_value: int | dt.date | None = None
    max_value: int | dt.date | str | None = None
    required: bool = True
    #: text with few distinct values over many rows (diagnoses, institutions, list
    #: items): held in memory as a categorical, like the national codes
    repeated: bool = False

    def bounds(self, today: dt.date | None = None) -> tuple:
        """(lowest, highest) accepted value, :data:`CURRENT_YEAR` resolved on ``today``."""
        hi = self.max_value
        if hi == CURRENT_YEAR:
            hi = (today or dt.date.today()).year
        return self.min_value, hi

    def range_text(self) -> str:
        """The range as the schema document states it ("" when there is none)."""
        lo, hi = self.min_value, self.max_value
        if lo is None and hi is None:
            return ""
        if self.kind == "money":
            def fmt(v):
                return "no bound" if v is None else f"{v:,}"
            return f"{fmt(lo)} to {fmt(hi)} yuan"
        if lo is not None and hi is not None:
            return f"{lo} to {hi}"
        return f"at least {lo}" if lo is not None else f"at most {hi}"


def money_column(name: str, meaning: str, **kw) -> Column:
    """A money column of a settlement or line: within +/- :data:`MAX_SETTLEMENT_YUAN`."""
    return Column(name, "money", meaning, min_value=-MAX_SETTLEMENT_YUAN,
                  max_value=MAX_SETTLEMENT_YUAN, **kw)


def date_column(name: str, meaning: str, **kw) -> Column:
    """A date column: from :data:`FIRST_DATE` to :data:`LAST_DATE`."""
    return Column(name, "date", meaning, min_value=FIRST_DATE, max_value=LAST_DATE, **kw)


@dataclass(frozen=True)
class Table:
    name: str
    file: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    optional: bool = False
    meaning: str = ""
    rules: tuple[str, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[Column]:
        return [c for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


PERSONS = Table(
    name="persons",
    file="persons.parquet",
    key=("psn_no",),
    meaning="one row per person",
    columns=(
        Column("psn_no", "string", "pseudonymous person id"),
        Column("birth_year", "int", "year of birth", min_value=FIRST_BIRTH_YEAR,
               max_value=CURRENT_YEAR),
        Column("gender", "code", "national code: 1 male, 2 female", codes=GENDERS),
        Column("insutype", "code", "310 employee, 390 resident", codes=INSUTYPES),
        Column("retired", "bool", "employee retired (false for residents)"),
        date_column("death_date", "date of death", nullable=True),
        Column("low_income", "bool", "low-income family (medical-assistance eligible); "
               "extra column, false when absent", required=False),
    ),
    rules=("psn_no unique", "residents are never retired",
           "death_date not before the birth year"),
)

POLICIES = Table(
    name="policies",
    file="policies.parquet",
    key=("policy_no",),
    meaning="one row per person per policy year of a commercial product",
    columns=(
        Column("policy_no", "string", "policy number, unique"),
        Column("psn_no", "string", "the insured person (in persons)"),
        Column("product_id", "string", "matches `id` in the product file", repeated=True),
        date_column("start_date", "first day of cover"),
        date_column("end_date", "last day of cover (inclusive); a real date, not an open end "
             "such as 9999-12-31"),
        Column("premium", "money", "premium paid, yuan", min_value=0,
               max_value=MAX_PREMIUM_YUAN),
        Column("preexisting", "bool", "listed pre-existing condition at entry"),
        Column("consent", "bool", "authorised use of medical-insurance data"),
        Column("claim_free_years", "int", "consecutive claim-free policy years before this "
               "one, where the insurer records them (extra column; when absent or not filled "
               "for every policy of a product, derived from the policy history and what was "
               "paid)", min_value=0, max_value=50, nullable=True, required=False),
    ),
    rules=("policy_no unique", "psn_no in persons", "start_date <= end_date",
           "no two policies of one person and product overlap"),
)

SETTLEMENTS = Table(
    name="settlements",
    file="settlements.parquet",
    key=("setl_id",),
    meaning="one row per basic-insurance settlement",
    columns=(
        Column("setl_id", "string", "settlement id, unique"),
        Column("psn_no", "string", "the patient (in persons)", repeated=True),
        date_column("setl_time", "settlement date"),
        Column("med_type", "code", "medical type (national code)", codes=MED_TYPES),
        Column("hosp_lv", "int", "hospital level 1-3", min_value=1, max_value=3),
        Column("insutype", "code", "310 employee, 390 resident", codes=INSUTYPES),
        Column("dise_code", "string", "ICD-10 code of the main diagnosis", repeated=True),
        money_column("medfee_sumamt", "total medical cost"),
        money_column("fulamt_ownpay_amt", "fully self-paid (on no list)"),
        money_column("overlmt_selfpay", "self-paid above a price cap"),
        money_column("preselfpay_amt", "up-front self-pay (class-B share)"),
        money_column("inscp_scp_amt", "amount within the policy scope"),
        money_column("act_pay_dedc", "deductible actually applied"),
        money_column("hifp_pay", "pooled-fund payment"),
        money_column("hifob_pay", "large-amount / supplementary fund payment"),
        money_column("hifmi_pay", "residents' critical-illness insurance payment"),
        money_column("maf_pay", "medical-assistance payment"),
        money_column("psn_part_amt", "the person's total share"),
        Column("refund_of", "string", "setl_id this row reverses", nullable=True),
        Column("fixmedins_code", "string", "medical institution code (extra column)",
               required=False, repeated=True),
    ),
    rules=(
        "setl_id unique", "psn_no in persons",
        "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt (to the fen)",
        "amounts >= 0 except on reversals",
        "in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0",
        "no part of the bill (any other amount) exceeds medfee_sumamt, except on reversals",
        "refund_of names an existing, non-reversal settlement of the same person, once",
        "a reversal carries the negated amounts of the settlement it reverses",
        "no settlement after the person's death",
    ),
)

SETTLEMENT_LINES = Table(
    name="settlement_lines",
    file="settlement_lines.parquet",
    key=("setl_id", "line_no"),
    optional=True,
    meaning="line items of settlements (optional; special-drug and class-C benefits read them)",
    columns=(
        Column("setl_id", "string", "the settlement (in settlements)"),
        Column("line_no", "int", "line number within the settlement", min_value=1),
        Column("hilist_code", "string", "national list code of the item", repeated=True),
        Column("list_class", "code", "A, B, C (commercial innovative list) or self",
               codes=LIST_CLASSES),
        money_column("amount", "line amount"),
        money_column("preselfpay_amt", "up-front self-pay share of a class-B line"),
    ),
    rules=("(setl_id, line_no) unique", "setl_id in settlements",
           "lines of a settlement sum to its medfee_sumamt and preselfpay_amt"),
)

TABLES: tuple[Table, ...] = (PERSONS, POLICIES, SETTLEMENTS, SETTLEMENT_LINES)
TABLES_BY_NAME = {t.name: t for t in TABLES}


def _sci(x: float) -> str:
    """``x`` as ``m x 10^e`` (two significant figures; ``10^e`` when m is 1)."""
    m, e = f"{x:.1e}".split("e")
    return f"10^{int(e)}" if m == "1.0" else f"{m} x 10^{int(e)}"


def bounds_markdown() -> str:
    """The section of ``docs/data-schema.md`` that states the bounds and why."""
    mx, fen = MAX_SETTLEMENT_YUAN, MAX_SETTLEMENT_FEN
    int64 = 2**63 - 1
    return "\n".join([
        "## Bounds", "",
        "Every amount and date has a plausible range (the `range` column below). "
        "`puhui validate` refuses a value outside it (exit 2, naming file, column, rule, "
        "count and example ids), a claims batch quarantines the settlement, and "
        "`claims direct` refuses it (`puhui.fund.validate.check_settlement_record`, with "
        "the same bounds and identities).", "",
        f"- **Settlement and line amounts**: within -{mx:,} to {mx:,} yuan (100 million; "
        "negative only on a reversal). Real single settlements stay below a few million "
        "yuan (CAR-T about 1.2 million), so only a corrupt or mistyped amount (fen "
        "written as yuan, a wrong unit) is refused. Inside the bound the engines' "
        f"integer arithmetic cannot overflow: {_sci(fen)} fen times a ratio of 10,000 basis "
        f"points is {_sci(fen * 10_000)}, {int64 // (fen * 10_000):,} times below the int64 "
        f"limit ({_sci(int64)}); a person's running sum in a policy year reaches it only "
        f"after {_sci(int64 // fen)} settlements at the bound. The layer engine checks both "
        "and stops with an error rather than wrap around.",
        f"- **Premium**: 0 to {MAX_PREMIUM_YUAN:,} yuan.",
        f"- **Birth year**: {FIRST_BIRTH_YEAR} to the current year (the day of the check).",
        f"- **Dates** (setl_time, start_date, end_date, death_date): {FIRST_DATE} to "
        f"{LAST_DATE}. An open end date such as 9999-12-31 is refused, not read as "
        "\"open\": a Huiminbao policy runs one policy year, so give its real last day of "
        "cover. Dates outside the range (year 3000, 9999-12-31) are reported as "
        "problems, never a crash, whatever unit the file stores them in.",
        f"- **Plausible dates**: inside the range, a date in January 1970 (the Unix "
        f"epoch, from {EPOCH_MONTH[0]} to {EPOCH_MONTH[1]}) is refused as well, in every "
        "date column: it is what a timestamp written in the wrong unit reads as (seconds "
        "read as milliseconds, microseconds as nanoseconds), not a real settlement, "
        "policy or death. fastparquet (retired in 2026) wrote a pandas 2 "
        "`datetime64[s]` column as milliseconds holding the seconds divided by 1000, so "
        "every date of such a file reads as 1970-01-01; the problem names the file, the "
        "column and the count. Write the dates again with pyarrow, or cast them to "
        "`datetime64[ns]` before writing. A claims batch quarantines such a settlement "
        "(Q_DATE_OUT_OF_RANGE).",
        "- **Consistency** (not on reversals, which carry an original's negated amounts): "
        "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt to "
        "the fen; psn_part_amt >= fulamt_ownpay_amt + overlmt_selfpay; no part of the bill "
        "exceeds medfee_sumamt; amounts >= 0; a policy's end_date >= its start_date.",
        ""])


def schema_markdown() -> str:
    """The schema as Markdown (``docs/data-schema.md`` is this text)."""
    out = ["# Fund-data schema", "",
           "Generated from `src/puhui/fund/schema.py` by `puhui schema`; do not edit by hand.",
           "Money is yuan with two decimals in files and integer fen once read.", "",
           bounds_markdown()]
    for t in TABLES:
        opt = " (optional)" if t.optional else ""
        out += [f"## `{t.file}`{opt}", "", t.meaning, "",
                "| column | kind | null | range | meaning |", "|---|---|---|---|---|"]
        for c in t.columns:
            extra = f" Codes: {', '.join(c.codes)}." if c.codes else ""
            if not c.required:
                extra += " Optional."
            out.append(f"| {c.name} | {c.kind} | {'yes' if c.nullable else 'no'} | "
                       f"{c.range_text()} | {c.meaning}.{extra} |")
        out += ["", "Rules: " + "; ".join(t.rules) + ".", ""]
    return "\n".join(out)
