"""The Python API of puhui: fund data, products, adjudication and pricing from a notebook.

Everything here is reached from the package itself (``import puhui``; ``puhui.__all__``)
and imported only when first used, so ``import puhui`` stays light. In the style of
scikit-learn, lifelines and chainladder: settings in ``__init__``, ``fit`` returns the
estimator, fitted state in attributes ending in ``_``, DataFrames in and out.

**Money is yuan** in every frame that goes in or comes out (``float64`` with two
decimals, the unit of the files and of ``eob.parquet``); the engines compute in integer
fen inside. A money column of integers is refused as fen, never paid as yuan.

The examples run as doctests (pytest's ``--doctest-modules`` on ``src/puhui``, as
every module's; ``pytest src/puhui/api.py`` runs these alone) on the shipped sample
``data-samples/city`` (a synthetic city of 20,000 people, 2024-2025); ``SAMPLE`` names it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from puhui.errors import InputError

#: The shipped sample fund data (a synthetic city; ``data-samples/README.md``).
SAMPLE = Path(__file__).resolve().parents[2] / "data-samples" / "city"


def read_fund(directory):
    """Read a fund-data folder into DataFrames in yuan, validated as ``puhui validate``.

    Parameters
    ----------
    directory : str or Path
        A folder holding ``persons.parquet``, ``policies.parquet``,
        ``settlements.parquet`` and optionally ``settlement_lines.parquet``
        (``docs/data-schema.md``).

    Returns
    -------
    Fund
        ``persons``, ``policies``, ``settlements`` and ``lines`` (``None`` without the
        lines file) with the files' columns; amounts in yuan (``float64``, two decimals),
        dates as ``datetime64[ns]``, national codes as categoricals. ``Fund.head(n)``
        cuts the first ``n`` persons; ``Fund.write(dir)`` writes a folder.

    Raises
    ------
    puhui.errors.InputError
        When the data breaks a rule of the contract: the message is ``puhui validate``'s
        (each broken rule with file, column, count, examples and fix, then its last line).

    Examples
    --------
    >>> import puhui
    >>> fund = puhui.read_fund(puhui.api.SAMPLE)
    >>> fund
    Fund(20,000 persons, 12,365 policies, 305,469 settlements, 18,496 lines; amounts in yuan)
    >>> float(fund.policies["premium"].iloc[0])      # yuan, as in the file
    129.0
    >>> str(fund.settlements["medfee_sumamt"].dtype)
    'float64'
    """
    from puhui.fund.frames import read_fund_yuan

    return read_fund_yuan(directory)


def load_product(product):
    """A product by its id in ``actuarial/products/`` or by the path of its TOML file.

    Parameters
    ----------
    product : str, Path or Product
        ``"huhuibao-2025"``, ``"path/to/product.toml"``, or a product already loaded
        (returned as it is).

    Returns
    -------
    puhui.products.model.Product
        The checked, compiled product: ``id``, ``name``, ``start``, ``end``,
        ``benefits`` (each with its ``id`` and ``name``), premiums in fen inside
        (``premium_flat_fen``).

    Raises
    ------
    puhui.errors.InputError
        No such product, or a product file that breaks the product-file rules.

    Examples
    --------
    >>> import puhui
    >>> p = puhui.load_product("huhuibao-2025")
    >>> p.id, str(p.start), str(p.end)
    ('huhuibao-2025', '2025-01-01', '2025-12-31')
    >>> [b.id for b in p.benefits]
    ['hospital', 'special_drugs', 'proton', 'cart', 'overseas_drugs']
    """
    from puhui.benefits.quantities import LineMatcher
    from puhui.products.catalog import resolve_product
    from puhui.products.model import Product
    from puhui.products.model import load_product as load

    if isinstance(product, Product):
        return product
    p = load(resolve_product(product))      # a mistyped id: "did you mean ...?"
    LineMatcher(p)                    # the lists it names must exist
    return p


def list_products():
    """The products of the actuarial basis (``actuarial/products/``).

    Returns
    -------
    pandas.DataFrame
        One row per product file: ``id``, ``name``, ``period`` (first to last day of
        cover, ``"YYYY-MM-DD to YYYY-MM-DD"``), sorted by id.

    Examples
    --------
    >>> import puhui
    >>> table = puhui.list_products()
    >>> table.columns.tolist()
    ['id', 'name', 'period']
    >>> table.set_index("id").loc["huhuibao-2025", "period"]
    '2025-01-01 to 2025-12-31'
    """
    import pandas as pd

    from puhui.basis import actuarial_dir
    from puhui.products.model import is_rule_file
    from puhui.products.model import load_product as load

    rows = []
    for path in sorted((actuarial_dir() / "products").glob("*.toml")):
        if is_rule_file(str(path)):
            continue
        p = load(path)
        rows.append({"id": p.id, "name": p.name, "period": f"{p.start} to {p.end}"})
    return pd.DataFrame(rows, columns=["id", "name", "period"]).sort_values(
        "id", ignore_index=True)


def adjudicate(settlements, policies, product, lines=None, *, persons=None,
               whole_yuan=False):
    """What a product pays on settlements: the explanation of benefit, in yuan.

    The frames are checked as ``puhui validate`` checks the files; the policies are
    those of ``product`` (its ``id``, within its policy period); a reversal and the
    settlement it undoes are dropped and settlements the batch's fraud and quality flags
    hold are left out, as ``puhui claims run`` does; the product's calculator pays the
    rest, per person in time order. No ledger: nothing was paid before.

    Parameters
    ----------
    settlements, policies : pandas.DataFrame
        As read from the Parquet files with pandas, or from :func:`read_fund`: the
        files' columns, **amounts in yuan** (a money column of integers is refused:
        integers look like fen).
    product : str, Path or Product
        As :func:`load_product` takes it.
    lines : pandas.DataFrame, optional
        ``settlement_lines`` (the line benefits: special drugs, CAR-T, ...).
    persons : pandas.DataFrame, optional
        With it, the rules that read persons are checked too (no settlement after the
        person's death).
    whole_yuan : bool, default False
        The settlements' amounts are all whole numbers of yuan (an extract rounded to
        the yuan). Without it, 50 or more settlements whose every amount is whole and
        whose median cost is above 10,000 yuan (or largest above 2 million) are refused
        as fen held as floats.

    Returns
    -------
    pandas.DataFrame
        ``eob.parquet``'s columns and meaning: one row per settlement and benefit,
        ``setl_id, psn_no, policy_no, benefit, eligible_amt, deductible_amt, ratio,
        payout_amt, status, reason``; amounts in yuan, ``ratio`` a fraction. Every
        input settlement appears (reversed pairs and held ones with status
        ``reversed`` / ``quarantined`` and no amount).

    Raises
    ------
    puhui.errors.InputError
        Frames that break a rule of the data contract (``puhui validate``'s messages),
        money columns of integers, no policy of the product, or a policy of the product
        outside its policy period.

    Examples
    --------
    >>> import puhui
    >>> fund = puhui.read_fund(puhui.api.SAMPLE).head(2000)
    >>> eob = puhui.adjudicate(fund.settlements, fund.policies, "huhuibao-2025",
    ...                        lines=fund.lines)
    >>> eob.columns.tolist()
    ['setl_id', 'psn_no', 'policy_no', 'benefit', 'eligible_amt', 'deductible_amt', 'ratio', 'payout_amt', 'status', 'reason']
    >>> len(eob) == 5 * len(fund.settlements)      # one row per settlement and benefit
    True
    >>> paid = eob[eob["payout_amt"] > 0]
    >>> print(f"paid {paid['payout_amt'].sum():,.2f} yuan to {paid['psn_no'].nunique()} people")
    ... # doctest: +ELLIPSIS
    paid ... yuan to ... people

    Fen are refused, not paid as yuan:

    >>> fen = fund.settlements.assign(medfee_sumamt=(fund.settlements["medfee_sumamt"] * 100)
    ...                               .round().astype("int64"))
    >>> puhui.adjudicate(fen, fund.policies, "huhuibao-2025")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    puhui.errors.InputError: settlements: column medfee_sumamt holds integers (int64): ...
    """
    import warnings

    from puhui.claims.batch import lines_missing_warning
    from puhui.claims.frames import adjudicate_frames

    product = load_product(product)
    eob = adjudicate_frames(product, settlements, policies, lines, persons,
                            whole_yuan=bool(whole_yuan))
    missing = lines_missing_warning(product, lines is not None, api=True)
    if missing:
        warnings.warn(missing, UserWarning, stacklevel=2)
    return eob


class ClaimsBatch:
    """A claims batch of ``puhui claims run`` from DataFrames in yuan, into a ledger.

    The frames are written as a fund-data folder (temporarily) and the command's own
    batch runs on it (:func:`puhui.claims.batch.run_batch`): the ledger gets the
    entries the command would record, and everything the command guarantees holds. The
    ledger's rule is *target minus already paid* per settlement and benefit, so a
    settlement already paid is not paid again; the same ``batch_id`` re-run on the same
    frames resumes and pays nothing twice; the same ``batch_id`` with other frames is
    refused. Bad settlement rows are quarantined with a reason code (the batch goes on);
    bad policies or persons stop it before anything is written.

    Parameters
    ----------
    product : str, Path or Product
        As :func:`load_product` takes it.
    ledger : str
        The ledger's URL: ``"sqlite:///path/ledger.db"`` (created when missing) or
        ``"postgresql://user@host/db"``.
    batch_id : str
        The batch's id in the ledger (re-run it to resume).
    mode : {"claimed", "proactive"}, default "claimed"
        As ``--mode``.
    period : str or (str, str), optional
        The period the frames cover, ``"2025-01-01:2025-06-30"`` (``--period``; default
        their first to last settlement date).
    complete : bool, default False
        The frames hold every settlement of their period (``--complete``): what a
        settlement they lack was paid is taken back.
    as_of : str or date, optional
        The business date the batch's payments are effective for (``--as-of``: the
        triangles of ``puhui reserve`` and ``puhui monitor`` read it); default the end of
        ``period``, else the frames' last settlement date. A date before a settlement
        the batch pays is refused.
    whole_yuan : bool, default False
        As :func:`adjudicate`'s: amounts all whole are yuan, not fen held as floats.

    Attributes
    ----------
    eob_ : pandas.DataFrame
        ``eob.parquet`` of the command: one row per settlement and benefit, amounts in
        yuan; ``payout_amt`` is this batch's entry (0 for what was paid before),
        ``target_amt`` what the settlement is due in all.
    summary_ : dict
        ``summary.json`` of the command (counts by status, ``paid_this_batch_yuan``,
        ``ledger_entries_yuan``, ``reconciles``, ...).
    paid_ : float
        Yuan this batch id holds in the ledger (net of reversals and adjustments), the
        command's "paid ... yuan in this batch". A batch re-run under its id resumes:
        the ledger gains nothing and ``paid_`` is the batch's entries as before; a
        replay of paid settlements under a new id has ``paid_`` 0.
    by_benefit_ : pandas.DataFrame
        Rows, eligible, paid and target yuan by benefit and status.

    Examples
    --------
    >>> import tempfile, puhui
    >>> fund = puhui.read_fund(puhui.api.SAMPLE).head(1000)
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
    >>> batch = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="2025-all")
    >>> first = batch.run(fund).paid_
    >>> first > 0
    True
    >>> batch.summary_["eob_matches_ledger"]
    True
    >>> batch.run(fund).paid_ == first        # the same batch resumed: its entries as before
    True
    >>> again = puhui.ClaimsBatch("huhuibao-2025", ledger=url, batch_id="replay").run(fund)
    >>> again.paid_, again.summary_["settlements_by_status"].get("paid", 0)   # a replay
    (0.0, 0)
    >>> print(f"paid {first:,.2f} yuan to {batch.eob_.query('payout_amt > 0').psn_no.nunique()} people")
    ... # doctest: +ELLIPSIS
    paid ... yuan to ... people
    """

    def __init__(self, product, ledger, batch_id, mode="claimed", period=None,
                 complete=False, as_of=None, whole_yuan=False):
        self.product = product
        self.ledger = ledger
        self.batch_id = batch_id
        self.mode = mode
        self.period = period
        self.complete = complete
        self.as_of = as_of
        self.whole_yuan = whole_yuan

    def run(self, settlements, policies=None, lines=None, persons=None, claims=None):
        """Run the batch on the frames (yuan) and record it in the ledger; returns
        ``self``.

        ``settlements`` may be a :class:`Fund` (its four tables are taken). Without
        ``persons``, the rules that read them are not applied (a settlement after the
        person's death is not quarantined): give them for a batch that pays. ``claims``:
        the settlement ids a claim was filed for (mode claimed; default: every
        settlement counts as claimed), as ``--claims``.
        """
        from puhui.claims.frames_batch import batch_frames
        from puhui.fund.frames import Fund
        from puhui.fund.schema import PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENTS

        directory = None
        if isinstance(settlements, Fund):
            if policies is not None:
                raise InputError("ClaimsBatch.run: a Fund holds its policies; give a Fund "
                                 "alone, or the frames")
            fund, directory = settlements, settlements.directory
            settlements, policies = fund.settlements, fund.policies
            lines = fund.lines if lines is None else lines
            persons = fund.persons if persons is None else persons
        if policies is None:
            raise InputError("ClaimsBatch.run: give the policies (or a Fund)")
        product = load_product(self.product)
        frames = {SETTLEMENTS: settlements, POLICIES: policies, SETTLEMENT_LINES: lines,
                  PERSONS: persons}
        options = {"mode": self.mode, "period": self.period, "complete": self.complete,
                   "claims": None if claims is None else {str(c) for c in claims},
                   "as_of": _date_text(self.as_of), "whole_yuan": bool(self.whole_yuan)}
        with _native_threads():
            res = batch_frames(product, frames, self.ledger, self.batch_id, options)
        self._fitted = (res, directory)
        self._set_attributes(product, res)
        return self

    def _set_attributes(self, product, res) -> None:
        import pandas as pd

        self.product_ = product
        self.eob_ = res.eob
        self.summary_ = res.summary
        for w in res.summary.get("warnings", []):
            import warnings

            warnings.warn(w, UserWarning, stacklevel=3)
        self.paid_ = res.summary["paid_this_batch_yuan"]
        self.by_benefit_ = pd.DataFrame(
            res.summary["by_benefit_and_status"],
            columns=["benefit", "status", "rows", "eligible_yuan", "paid_yuan", "target_yuan"])

    def report(self, path, lang="en"):
        """Write the batch report (``report.html`` of ``puhui claims run``, ``lang``
        "en" or "zh") to ``path``; returns the path."""
        from puhui.claims.report import render
        from puhui.reporting import synthetic_marker

        if not hasattr(self, "_fitted"):
            raise InputError("this ClaimsBatch has not run yet: call run(...) first")
        res, directory = self._fitted
        path = Path(path)
        path.write_text(render(res.report_rows, res.summary, res.reasons, lang=lang,
                               synthetic=synthetic_marker(directory)), encoding="utf-8")
        return path

    def __repr__(self) -> str:
        from puhui.claims.ledger import shown_url      # (a password is not shown)

        return (f"ClaimsBatch({getattr(self.product, 'id', self.product)!r}, "
                f"ledger={shown_url(self.ledger)!r}, batch_id={self.batch_id!r})")


def _date_text(value) -> str | None:
    """A date given to the API as text, ``datetime.date``/``datetime`` or a pandas
    Timestamp, as the ISO text the commands take (a time of day is refused: a business
    date is a day); None stays None."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.datetime64):        # a date as numpy holds it (NaT: none)
        value = pd.Timestamp(value)
    if value is pd.NaT:
        raise InputError("as_of: NaT is not a date; give a date (YYYY-MM-DD) or leave "
                         "as_of out")
    if isinstance(value, dt.datetime):          # pandas' Timestamp is one
        if (value.hour, value.minute, value.second, value.microsecond) != (0, 0, 0, 0):
            raise InputError(f"as_of {value!s}: a business date is a day; give a date")
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise InputError(f"as_of: give a date (YYYY-MM-DD), not {type(value).__name__}")


#: Survival's fitted tables: attribute -> the study's table (``survival.json`` holds
#: the same as records).
SURVIVAL_TABLES = {"actual_to_expected_": "ae", "gompertz_": "gompertz",
                   "gompertz_mle_": "gompertz_mle", "mortality_cox_": "mortality_cox",
                   "lapse_rates_": "lapse_rates", "persistency_curve_": "persistency_curve",
                   "lapse_cox_": "lapse_cox", "admission_cox_": "admission_cox"}


class Survival:
    """The survival fits of ``puhui survival`` on fund data: mortality, persistency and
    time to first admission, with their diagnostics.

    A thin estimator over :func:`puhui.survival.analysis.study_folder`, the command's
    own function: on the same data, ``max_people`` and ``seed``, :meth:`to_json` is the
    text of ``survival.json``.

    Parameters
    ----------
    max_people : int, default 200,000
        People the Cox models and curves run on at most (a random subset drawn with
        ``seed``); the A/E and the Gompertz fits use everyone.
    seed : int, default 0

    Attributes
    ----------
    actual_to_expected_ : pandas.DataFrame
        Deaths against CL1/CL2 by sex, table and age band: ``person_years``,
        ``deaths``, ``expected``, ``a_to_e`` and its exact 95 % interval
        (``lower``, ``upper``).
    gompertz_, gompertz_mle_ : pandas.DataFrame
        The Gompertz force mu(x) = exp(a + b x) by sex: a Poisson GLM by single age
        (``a``, ``b`` and their standard errors) and lifelines' continuous-time MLE.
    mortality_cox_, lapse_cox_, admission_cox_ : pandas.DataFrame
        The Cox models (hazard ratios with intervals) of death on the age scale, of
        lapse, and of the first hospital admission.
    lapse_rates_ : pandas.DataFrame
        Annual lapse rates by age band, pre-existing condition and funding.
    persistency_curve_ : pandas.DataFrame
        The share of policyholders still enrolled by policy year.
    figures_ : dict
        Every figure of ``survival.json``.
    tables_ : dict of pandas.DataFrame
        Every table of the report (calibrations and proportional-hazards checks too).
    years_ : tuple of int
        The data years observed (first, last settlement year).

    Examples
    --------
    >>> import puhui
    >>> fund = puhui.read_fund(puhui.api.SAMPLE).head(3000)
    >>> fit = puhui.Survival(max_people=3000).fit(fund)
    >>> fit.years_
    (2024, 2025)
    >>> fit.actual_to_expected_.columns[:4].tolist()
    ['gender', 'table', 'band', 'person_years']
    >>> int(fit.actual_to_expected_["deaths"].sum()) == fit.figures_["mortality"]["deaths"]
    True
    >>> sorted(fit.gompertz_["gender"].astype(str))
    ['1', '2']
    """

    def __init__(self, max_people=200_000, seed=0):
        self.max_people = max_people
        self.seed = seed

    def fit(self, fund):
        """Fit on ``fund``: a :class:`Fund` (written to a temporary folder and studied
        from it) or a fund-data folder (studied where it is, as ``puhui survival
        DIR``). Returns ``self``."""
        from puhui.survival.analysis import study_folder

        _check_int("Survival", "max_people", self.max_people, 100)
        _check_int("Survival", "seed", self.seed, 0, 2**32 - 1)
        with _native_threads(), tempfile.TemporaryDirectory(prefix="puhui-survival-") as tmp, \
                _named_fund(tmp):
            folder = _fund_folder(fund, tmp, "Survival.fit")
            res, years = study_folder(folder, max_people=self.max_people, seed=self.seed)
        self._fitted = (res, getattr(fund, "directory", None) or
                        (None if folder.is_relative_to(tmp) else folder))
        self.figures_ = res.figures
        self.tables_ = {k: v for k, v in res.tables.items() if v is not None}
        for attr, key in SURVIVAL_TABLES.items():
            setattr(self, attr, res.tables.get(key))
        self.years_ = (years[0], years[-1])
        return self

    def _check_fitted(self):
        if not hasattr(self, "_fitted"):
            raise InputError("this Survival is not fitted yet: call fit(fund) first")
        return self._fitted

    def to_json(self) -> str:
        """``survival.json``'s text (without its final newline), as ``puhui survival``
        writes it on the same data, ``max_people`` and ``seed``."""
        from puhui.survival.analysis import survival_json

        return survival_json(self._check_fitted()[0].figures)

    def report(self, path, lang="en"):
        """Write the survival report (``report.html`` of ``puhui survival``, ``lang``
        "en" or "zh") to ``path``; returns the path."""
        from puhui.reporting import synthetic_marker
        from puhui.survival.report import render

        res, directory = self._check_fitted()
        path = Path(path)
        path.write_text(render(res, lang=lang, synthetic=synthetic_marker(directory)),
                        encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return f"Survival(max_people={self.max_people!r}, seed={self.seed!r})"


def pay_direct(product, ledger, settlement, lines=None):
    """Pay one settlement at once against the ledger (直赔), as ``puhui claims direct``.

    The settlement is adjudicated against its policy and the running deductible and
    limits the ledger holds, and recorded, in one transaction
    (:func:`puhui.claims.direct.pay_or_reverse`, the command's function). The same
    settlement sent again is answered from the ledger and not paid twice; the same
    ``setl_id`` with other amounts is refused. A settlement with ``refund_of`` reverses
    the one it names at once (the policy year adjudicated again, the differences
    written). A batch later run on data holding the settlement keeps what was paid.

    Parameters
    ----------
    product : str, Path or Product
        As :func:`load_product` takes it.
    ledger : str
        The ledger's URL (``sqlite:///...`` or ``postgresql://...``). It must exist and
        hold the product's policies (a :class:`ClaimsBatch` or ``puhui ledger load``).
    settlement : pandas.Series or dict
        A row of a settlements frame (yuan; a money value of integers is refused as
        fen), or the JSON object of ``claims direct`` (docs/claims.md: numbers are
        yuan).
    lines : pandas.DataFrame, optional
        ``settlement_lines``: the settlement's own rows are sent with it.

    Returns
    -------
    dict
        The explanation of benefit, yuan: ``setl_id``, ``total_payout``, ``benefits``
        (each ``benefit``, ``eligible_amt``, ``deductible_amt``, ``ratio``,
        ``payout_amt``, ``reason``), and ``already_decided`` when it was paid before.

    Examples
    --------
    One person of the sample: the ledger learns their policy from a batch of their
    other settlements, then their largest bill of 2025 is paid at once:

    >>> import tempfile, puhui
    >>> one = puhui.read_fund(puhui.api.SAMPLE).people(["P00001065"])
    >>> st, lines = one.settlements, one.lines
    >>> bill = st[st["setl_id"] == "S000178115"].iloc[0]
    >>> url = f"sqlite:///{tempfile.mkdtemp()}/ledger.db"
    >>> _ = puhui.ClaimsBatch("huhuibao-2025", url, "to-date").run(
    ...     st[st["setl_id"] != bill["setl_id"]], one.policies,
    ...     lines[lines["setl_id"] != bill["setl_id"]], one.persons)
    >>> eob = puhui.pay_direct("huhuibao-2025", url, bill, lines=lines)
    >>> eob["total_payout"]
    29805.53
    >>> h = eob["benefits"][0]
    >>> h["benefit"], h["eligible_amt"], h["deductible_amt"], h["ratio"]
    ('hospital', 54579.33, 12000.0, 0.7)
    >>> round((h["eligible_amt"] - h["deductible_amt"]) * h["ratio"], 2)   # by hand
    29805.53
    >>> puhui.pay_direct("huhuibao-2025", url, bill, lines=lines)["already_decided"]
    True
    """
    from puhui.claims.direct import pay_or_reverse
    from puhui.claims.frames import settlement_record

    import pandas as pd

    if isinstance(settlement, pd.DataFrame):
        if len(settlement) != 1:
            raise InputError(f"pay_direct: give one settlement (a row, a Series or a dict), "
                             f"not a frame of {len(settlement):,} rows; for many, "
                             f"ClaimsBatch")
        settlement = settlement.iloc[0]
    if isinstance(settlement, dict):
        raw = dict(settlement)
        if lines is not None and "lines" not in raw:
            raw["lines"] = settlement_record({"setl_id": raw.get("setl_id")}, lines).get(
                "lines", [])
    else:
        raw = settlement_record(settlement, lines)
    return pay_or_reverse(load_product(product), ledger, raw)


def _check_int(who: str, name: str, value, lo: int, hi: int | None = None) -> None:
    """Refuse a setting the command line's range refuses (``--seed``, ``--policies``,
    ``--max-people``): an integer from ``lo`` (to ``hi``), not a bool."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo \
            or (hi is not None and value > hi):
        top = f" to {hi:,}" if hi is not None else " or more"
        raise InputError(f"{who}: {name}={value!r}; give a whole number from {lo:,}{top}, "
                         f"as the command line's option takes it")


def _fund_folder(fund, tmp: str, who: str = "Pricer.fit") -> Path:
    """The folder to fit on: a folder as given, a :class:`Fund` written to ``tmp``."""
    from puhui.fund.frames import Fund

    if isinstance(fund, Fund):
        return fund.write(Path(tmp) / "fund")
    if isinstance(fund, (str, Path)):
        return Path(fund)
    raise InputError(f"{who}: give a Fund (puhui.read_fund) or a fund-data folder, "
                     f"not {type(fund).__name__}")


def _named_fund(tmp: str):
    """Refusals from the temporary folder a Fund was written to name "the Fund", not
    the folder (gone by the time the user reads the message)."""
    import contextlib

    @contextlib.contextmanager
    def named():
        try:
            yield
        except InputError as exc:
            fund = str(Path(tmp) / "fund")
            raise InputError(str(exc).replace(f"`puhui validate {fund}`", "`puhui validate` "
                                              "on the files").replace(f"{fund}/", "the Fund's ").replace(fund, "the Fund")
                             ) from None
    return named()


def _native_threads():
    """Native thread pools (BLAS, OpenMP) at one thread while pricing, as on the command
    line (idle threads spinning made a pricing several times slower on a busy machine;
    docs/benchmarks.md), restored afterwards; the user's own setting (OMP_NUM_THREADS
    and the like) is left as it is. Blocks run in processes (:mod:`puhui.execution`)."""
    import contextlib
    import os

    from puhui.execution import users_threads

    # idle OpenMP threads sleep rather than spin, as on the command line (counts only
    # where OpenMP is not loaded yet; a user's own setting is kept): spinning made a
    # pricing of 1,000 people take 13.4 s of CPU instead of 7.3
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    if users_threads() is not None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


class Pricer:
    """The pricing of a product on fund data, as ``puhui price`` builds it.

    Parameters
    ----------
    product : str, Path or Product
        As :func:`load_product` takes it.
    assumptions : str or Path, optional
        An assumptions file (default ``actuarial/assumptions/pricing.toml``).
    seed : int, default 0
        The seed of the simulations (the same seed, the same figures).
    backtest : bool or {"last", "all", "none"}, default False
        Also price the last data year from the years before it and set it against what
        that year's enrollees cost (``True`` or ``"last"``; ``"all"``: every year with
        earlier years), as ``puhui price`` does by default (``--no-backtest``: False).
    policies : int, optional
        The policies expected next year, instead of the enrolment models' count.

    Attributes
    ----------
    pricing_ : dict
        Every figure of ``pricing.json`` (:meth:`to_json` is its text).
    pure_premium_ : pandas.Series
        Pure premium per policy by benefit and ``total``, yuan.
    gross_premium_ : float or pandas.DataFrame
        Gross premium per policy, yuan (a DataFrame by premium cell for a product rated
        by age).
    expected_loss_ratio_ : float
        At the filed premium (the product file's), or at the gross premium.
    loss_ratio_interval_ : pandas.Series
        ``level``, ``lower``, ``upper`` of the loss ratio's interval.
    premium_table_ : pandas.DataFrame
        By benefit and ``total``: ``pure_premium_model`` (the GLMs), ``pure_premium``
        (after credibility and agreements) and ``gross_premium`` (pure premium over the
        target loss ratio), yuan per policy.
    tables_ : dict of pandas.DataFrame
        The report's tables (coefficients, actual against expected, ...).
    product_ : Product
        The product priced.
    lifetime_ : pandas.DataFrame or None
        For a cover renewable past its entry ages (the elderly cover,
        ``elderly-medical-60-80``): by entry age, the lifetime price of ``puhui price``
        (:mod:`puhui.pricing.lifetime`), yuan per policy a year: ``level_pure_premium``
        and ``level_gross_premium`` (death only, today's money), the same
        ``_with_lapse``, ``pv_claims`` and ``premium_annuity`` (their ratio is the
        level pure premium), ``first_year_natural_premium``, ``peak_reserve`` (and its
        age), ``loss_ratio_at_filed_schedule``. None for an annual cover.
    step_rated_ : pandas.DataFrame or None
        The step-rated schedule by age band (``pure_premium``, ``gross_premium``).
    claims_by_age_ : pandas.DataFrame or None
        Expected claims per person-year by single attained age, ``men`` and ``women``.

    Examples
    --------
    >>> import puhui
    >>> fund = puhui.read_fund(puhui.api.SAMPLE).head(1500)
    >>> pricer = puhui.Pricer("huhuibao-2025", seed=1).fit(fund)
    >>> pricer.pure_premium_.index.tolist()
    ['hospital', 'special_drugs', 'proton', 'cart', 'overseas_drugs', 'total']
    >>> bool(pricer.gross_premium_ > pricer.pure_premium_["total"] > 0)
    True
    >>> pricer.loss_ratio_interval_.index.tolist()
    ['level', 'lower', 'upper']
    >>> pricer.premium_table_.columns.tolist()
    ['pure_premium_model', 'pure_premium', 'gross_premium']

    A change of terms re-priced from the fitted models (:func:`what_if`, as ``puhui
    what-if``), yuan per policy:

    >>> t = pricer.what_if("hospital", deductible=30000)
    >>> t.columns.tolist()
    ['pure_before', 'pure_after', 'gross_before', 'gross_after']
    >>> bool(t.loc["hospital", "pure_after"] < t.loc["hospital", "pure_before"])
    True
    >>> bool(t.loc["cart", "pure_after"] == t.loc["cart", "pure_before"])   # others unchanged
    True
    """

    def __init__(self, product, assumptions=None, seed=0, backtest=False, policies=None):
        self.product = product
        self.assumptions = assumptions
        self.seed = seed
        self.backtest = backtest
        self.policies = policies

    def _scope(self) -> str:
        b = self.backtest
        if b is True:
            return "last"
        if b is False or b is None:
            return "none"
        return str(b)

    def fit(self, fund):
        """Price ``self.product`` on ``fund``: a :class:`Fund` (written to a temporary
        folder and priced from it) or a fund-data folder (priced where it is, as ``puhui
        price --data`` does: the way for data too large to hold as frames). Returns
        ``self``."""
        from puhui.pricing.run import price_folder, price_manifest
        from puhui.reporting import synthetic_marker

        product = load_product(self.product)
        _check_int("Pricer", "seed", self.seed, 0, 2**32 - 1)
        if self.policies is not None:
            _check_int("Pricer", "policies", self.policies, 1)
        with _native_threads(), tempfile.TemporaryDirectory(prefix="puhui-pricer-") as tmp, \
                _named_fund(tmp):
            folder = _fund_folder(fund, tmp)
            result, assumptions, a_path = price_folder(
                product, folder, seed=self.seed, assumptions_file=self.assumptions,
                policies=self.policies, backtest=self._scope())
            manifest = price_manifest(product.path, folder, a_path, self.seed,
                                      self.policies, self._scope())
            self._synthetic = synthetic_marker(folder)     # (a Fund's written folder too)
        if folder.is_relative_to(tmp):
            manifest["options"]["data"] = "a puhui.Fund in memory (hashes: as written)"
        self._fitted = (result, manifest, assumptions, a_path)
        self._set_attributes(product, result)
        return self

    def _set_attributes(self, product, result) -> None:
        import pandas as pd

        f = result.figures
        self.product_ = product
        self.pricing_ = f
        self.tables_ = dict(result.tables)
        self.pure_premium_ = pd.Series(f["pure_premium"], name="pure_premium_yuan", dtype=float)
        gross = f["gross_premium"]
        self.gross_premium_ = pd.DataFrame(gross) if isinstance(gross, list) else gross
        self.expected_loss_ratio_ = f["expected_loss_ratio"]
        self.loss_ratio_interval_ = pd.Series(f["loss_ratio_interval"], name="loss_ratio")
        target = f["basis"]["target_loss_ratio"]
        table = pd.DataFrame({"pure_premium_model": pd.Series(f["pure_premium_model"]),
                              "pure_premium": pd.Series(f["pure_premium"])})
        table["gross_premium"] = (table["pure_premium"] / target).round(2)
        if not isinstance(gross, list):
            table.loc["total", "gross_premium"] = gross
        table.index.name = "benefit"
        self.premium_table_ = table
        self._set_lifetime(f.get("lifetime"))

    def _set_lifetime(self, life) -> None:
        """The lifetime price of a cover renewable past its entry ages (the elderly
        cover), as ``pricing.json``'s ``lifetime`` holds it; None for an annual one."""
        import pandas as pd

        if life is None:
            self.lifetime_ = self.step_rated_ = self.claims_by_age_ = None
            return
        cols = ["entry_age", "share_men", "pv_claims", "premium_annuity",
                "level_pure_premium", "level_gross_premium",
                "level_pure_premium_with_lapse", "level_gross_premium_with_lapse",
                "first_year_natural_premium", "peak_reserve", "peak_reserve_age",
                "loss_ratio_at_filed_schedule"]
        self.lifetime_ = pd.DataFrame(life["entry_ages"])[cols].set_index("entry_age")
        self.step_rated_ = pd.DataFrame(life["step_rated"])
        self.claims_by_age_ = pd.DataFrame(life["claims_by_age"]).set_index("age")

    def _check_fitted(self):
        if not hasattr(self, "_fitted"):
            raise InputError("this Pricer is not fitted yet: call fit(fund) first")
        return self._fitted

    def what_if(self, benefit, **changes):
        """Re-price a change of ``benefit``'s terms or drug list from the fitted models,
        without refitting, as ``puhui what-if`` does: see :func:`what_if`."""
        self._check_fitted()
        return what_if(self, benefit, **changes)

    def to_json(self) -> str:
        """``pricing.json``'s text (without its final newline): the same figures as
        ``puhui price`` on the same data, product, assumptions and seed."""
        from puhui.pricing.run import pricing_json

        return pricing_json(self._check_fitted()[0].figures)

    def report(self, path, lang="en"):
        """Write the pricing report (``report.html`` of ``puhui price``, ``lang`` "en"
        or "zh", with the banner of synthetic data where the data is) to ``path``;
        returns the path."""
        from puhui.pricing.run import pricing_report

        result, manifest, assumptions, a_path = self._check_fitted()
        path = Path(path)
        path.write_text(pricing_report(result, manifest, assumptions, a_path, lang,
                                       synthetic=self._synthetic), encoding="utf-8")
        return path

    def write(self, out, lang="en"):
        """The files of ``puhui price`` in folder ``out``: ``pricing.json``,
        ``manifest.json``, the fitted models and ``report.html`` (in ``lang``);
        returns ``out``."""
        from puhui.pricing.run import write_pricing

        result, manifest, assumptions, a_path = self._check_fitted()
        write_pricing(Path(out), result, dict(manifest), assumptions, a_path, lang=lang)
        if self._synthetic:          # priced from memory: the manifest names no folder
            self.report(Path(out) / "report.html", lang)
        return Path(out)

    def __repr__(self) -> str:
        args = [repr(getattr(self.product, "id", self.product))]
        for k, default in (("assumptions", None), ("seed", 0), ("backtest", False),
                           ("policies", None)):
            v = getattr(self, k)
            if v != default:
                args.append(f"{k}={v!r}")
        return f"Pricer({', '.join(args)})"


#: The changes :func:`what_if` takes: name -> (lowest, highest) value.
WHAT_IF_TERMS = {"deductible": (0.0, 1e13), "ratio": (0.0, 1.0),
                 "preexisting_ratio": (0.0, 1.0), "limit": (0.0, 1e13)}


def _what_if_changes(changes: dict) -> tuple[dict, tuple]:
    """The terms changed (checked finite and within range) and the drugs dropped."""
    import math
    import numbers

    unknown = set(changes) - set(WHAT_IF_TERMS) - {"drop_drugs"}
    if unknown:
        raise InputError(f"what_if: no change {', '.join(sorted(unknown))}; give "
                         f"{', '.join(WHAT_IF_TERMS)} or drop_drugs")
    terms = {}
    for k, (lo, hi) in WHAT_IF_TERMS.items():
        v = changes.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                or not lo <= v <= hi:
            raise InputError(f"what_if: {k}={v!r}; give a number from {lo:g} to {hi:g}"
                             f"{' (yuan a year)' if hi > 1 else ''}")
        terms[k] = float(v)
    drugs = changes.get("drop_drugs") or ()
    drugs = (drugs,) if isinstance(drugs, str) else tuple(str(d) for d in drugs)
    if not terms and not drugs:
        raise InputError("what_if: give a change: deductible, ratio, preexisting_ratio, "
                         "limit or drop_drugs")
    return terms, drugs


def what_if(priced, benefit, **changes):
    """Re-price a change of terms or drug list from a pricing, without refitting.

    What ``puhui what-if`` computes (:func:`puhui.pricing.whatif.reprice`, the
    command's function): the annual benefit per premium cell recomputed from the same
    frequency and severity models and the same enrolled mix with the new terms; a drug
    taken off a line benefit's list removes its share of the benefit's events and
    amounts (to first order).

    Parameters
    ----------
    priced : Pricer or str or Path
        A fitted :class:`Pricer`, or the folder of a pricing (``puhui price --out``, or
        :meth:`Pricer.write`): its ``models.pkl``, a Python pickle (load only files your
        own runs wrote).
    benefit : str
        The benefit whose terms change (``"hospital"``, ``"special_drugs"``, ...).
    **changes
        ``deductible`` and ``limit`` (yuan a year), ``ratio`` and ``preexisting_ratio``
        (fractions), ``drop_drugs`` (list codes taken off the benefit's list).

    Returns
    -------
    pandas.DataFrame
        By benefit and ``total`` (the index): ``pure_before``, ``pure_after``,
        ``gross_before``, ``gross_after``, yuan per policy (gross = pure over the
        target loss ratio).

    Raises
    ------
    puhui.errors.InputError
        No change, a value out of range, a benefit or drug the product or the data
        does not have, a folder without a pricing state.

    Examples
    --------
    :class:`Pricer`'s example re-prices a deductible from a fitted pricer; from a
    folder ``puhui price`` wrote: ``puhui.what_if("priced/", "hospital",
    deductible=30000)``. A value out of range is refused before anything is read:

    >>> import puhui
    >>> puhui.what_if("priced/", "hospital", ratio=1.5)
    Traceback (most recent call last):
    ...
    puhui.errors.InputError: what_if: ratio=1.5; give a number from 0 to 1
    """
    from puhui.pricing.whatif import PricingState, reprice

    terms, drugs = _what_if_changes(changes)
    if isinstance(priced, Pricer):
        state = priced._check_fitted()[0].state
        if state is None:
            raise InputError("what_if: this pricing kept no models to re-price")
    elif isinstance(priced, (str, Path)):
        state = PricingState.load(Path(priced))
    else:
        raise InputError(f"what_if: give a fitted Pricer or a pricing's folder, not "
                         f"{type(priced).__name__}")
    with _native_threads():        # (BLAS threads spinning made a what-if 20 times slower)
        try:
            t = reprice(state, benefit, drop_drugs=drugs, **terms)
        except InputError as exc:
            raise InputError(str(exc).replace("--drop-drug", "drop_drugs")) from None
    return t.set_index("benefit")
