"""The one definition of the fund-data files (CONTRACT.md, "Anonymised fund data").

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

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    meaning: str
    nullable: bool = False
    codes: tuple[str, ...] | None = None
    min_value: int | None = None
    max_value: int | None = None
    required: bool = True
    #: text with few distinct values over many rows (diagnoses, institutions, list
    #: items): held in memory as a categorical, like the national codes
    repeated: bool = False


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
        Column("birth_year", "int", "year of birth", min_value=1900, max_value=2100),
        Column("gender", "code", "national code: 1 male, 2 female", codes=GENDERS),
        Column("insutype", "code", "310 employee, 390 resident", codes=INSUTYPES),
        Column("retired", "bool", "employee retired (false for residents)"),
        Column("death_date", "date", "date of death", nullable=True),
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
        Column("start_date", "date", "first day of cover"),
        Column("end_date", "date", "last day of cover (inclusive)"),
        Column("premium", "money", "premium paid, yuan", min_value=0),
        Column("preexisting", "bool", "listed pre-existing condition at entry"),
        Column("consent", "bool", "authorised use of medical-insurance data"),
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
        Column("setl_time", "date", "settlement date"),
        Column("med_type", "code", "medical type (national code)", codes=MED_TYPES),
        Column("hosp_lv", "int", "hospital level 1-3", min_value=1, max_value=3),
        Column("insutype", "code", "310 employee, 390 resident", codes=INSUTYPES),
        Column("dise_code", "string", "ICD-10 code of the main diagnosis", repeated=True),
        Column("medfee_sumamt", "money", "total medical cost"),
        Column("fulamt_ownpay_amt", "money", "fully self-paid (on no list)"),
        Column("overlmt_selfpay", "money", "self-paid above a price cap"),
        Column("preselfpay_amt", "money", "up-front self-pay (class-B share)"),
        Column("inscp_scp_amt", "money", "amount within the policy scope"),
        Column("act_pay_dedc", "money", "deductible actually applied"),
        Column("hifp_pay", "money", "pooled-fund payment"),
        Column("hifob_pay", "money", "large-amount / supplementary fund payment"),
        Column("hifmi_pay", "money", "residents' critical-illness insurance payment"),
        Column("maf_pay", "money", "medical-assistance payment"),
        Column("psn_part_amt", "money", "the person's total share"),
        Column("refund_of", "string", "setl_id this row reverses", nullable=True),
        Column("fixmedins_code", "string", "medical institution code (extra column)",
               required=False, repeated=True),
    ),
    rules=(
        "setl_id unique", "psn_no in persons",
        "medfee_sumamt = hifp_pay + hifob_pay + hifmi_pay + maf_pay + psn_part_amt (to the fen)",
        "amounts >= 0 except on reversals",
        "in-list self-pay = psn_part_amt - fulamt_ownpay_amt - overlmt_selfpay >= 0",
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
        Column("amount", "money", "line amount"),
        Column("preselfpay_amt", "money", "up-front self-pay share of a class-B line"),
    ),
    rules=("(setl_id, line_no) unique", "setl_id in settlements",
           "lines of a settlement sum to its medfee_sumamt and preselfpay_amt"),
)

TABLES: tuple[Table, ...] = (PERSONS, POLICIES, SETTLEMENTS, SETTLEMENT_LINES)
TABLES_BY_NAME = {t.name: t for t in TABLES}


def schema_markdown() -> str:
    """The schema as Markdown (``docs/data-schema.md`` is this text)."""
    out = ["# Fund-data schema", "",
           "Generated from `src/puhui/fund/schema.py` by `puhui schema`; do not edit by hand.",
           "Money is yuan with two decimals in files and integer fen once read.", ""]
    for t in TABLES:
        opt = " (optional)" if t.optional else ""
        out += [f"## `{t.file}`{opt}", "", t.meaning, "",
                "| column | kind | null | meaning |", "|---|---|---|---|"]
        for c in t.columns:
            extra = f" Codes: {', '.join(c.codes)}." if c.codes else ""
            if not c.required:
                extra += " Optional."
            out.append(f"| {c.name} | {c.kind} | {'yes' if c.nullable else 'no'} | "
                       f"{c.meaning}.{extra} |")
        out += ["", "Rules: " + "; ".join(t.rules) + ".", ""]
    return "\n".join(out)
