"""The ``puhui`` command line. Heavy modules are imported inside each command, so
``puhui --help`` starts fast. Bad input ends with a message and exit code 2."""

from __future__ import annotations

import sys

import click

from puhui import __version__
from puhui.errors import InputError, JobFailed


def _progress(enabled: bool):
    """A step printer for long work: on a terminal only, quiet in CI and pipes."""
    if not enabled or not sys.stderr.isatty():
        return None
    return lambda step: click.echo(f"  ... {step}", err=True)


class _Finite(click.FloatRange):
    """A float range that refuses NaN and infinity (click's own range lets NaN through:
    every comparison with it is false)."""

    name = "finite number"

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


#: the largest amount in yuan an option takes: puhui.money.NO_LIMIT (10**15 fen), "no
#: limit" inside the engines
_MAX_YUAN = 1e13


def _out_dir(path) -> None:
    """Make the output folder ``path`` (and its parents) before any long work, and check
    a file can be made in it: a path that is a file, under a file, or not writable is
    refused with exit 2, naming it."""
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    if str(path).strip() == "":
        raise InputError("--out is empty; give a folder to write into")
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {path}: a file is there, not a folder; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".puhui-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(f"--out {path}: cannot write there ({why}); give a folder you may "
                         f"write to") from None


def _lang_option(f):
    """``--lang en|zh``: the language of the command's report.html (issue 21)."""
    return click.option("--lang", type=click.Choice(["en", "zh"]), default="en",
                        show_default=True,
                        help="language of report.html: en (English) or zh (Chinese, "
                             "<html lang=\"zh-CN\">); the figures are the same")(f)


def _out_file(path, option: str = "--out") -> None:
    """Check the output file ``path`` can be written before the work starts (its folder
    made if missing); a folder or an unwritable place is refused with exit 2."""
    import os
    from pathlib import Path

    p = Path(path)
    if str(path).strip() == "":
        raise InputError(f"{option} is empty; give a file to write")
    if p.is_dir():
        raise InputError(f"{option} {path}: a folder is there; give a file name")
    try:
        if p.parent != Path(""):
            p.parent.mkdir(parents=True, exist_ok=True)
        existed = p.exists()
        with open(p, "ab"):
            pass
        if not existed:
            os.unlink(p)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(f"{option} {path}: cannot write there ({why}); give a file in a "
                         f"folder you may write to") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="puhui")
def cli():
    """puhui: pricing and claims for inclusive commercial health insurance (惠民保)."""


@cli.command()
@click.option("--persons", type=click.IntRange(1, 100_000_000), required=True,
              help="number of people")
@click.option("--years", type=click.IntRange(1, 10), required=True, help="policy years")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), required=True,
              help="random seed (same seed, same bytes)")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="folder to write the four Parquet files into")
@click.option("--start-year", type=click.IntRange(2021, 2030), default=None,
              help="first policy year (default: the parameter file's)")
@click.option("--dirty", is_flag=True, help="plant a few bad rows (for testing validation)")
@click.option("--generator", type=click.Choice(["city", "second"]), default="city",
              show_default=True,
              help="city: the standard generator; second: an independent one for truth "
                   "checks (persistent frailty, conditions, selected enrolment; "
                   "actuarial/assumptions/synth-second.toml)")
@click.option("--claims", "claims_file", is_flag=True,
              help="also write OUT/claims.parquet: the settlements a claim was filed for "
                   "and their filing dates (reporting lags for claimed batches; its own "
                   "random stream, so the other files are the same bytes)")
def synth(persons, years, seed, out, start_year, dirty, generator, claims_file):
    """Write a synthetic city of fund data (persons, policies, settlements, lines)."""
    from puhui.fund.files import write_fund
    from puhui.synth.city import synth_city

    if generator == "second" and dirty:
        raise InputError("--dirty works with --generator city only; drop one of them")
    if claims_file and dirty:
        raise InputError("--claims needs clean settlements; drop --dirty or --claims")
    _out_dir(out)
    if generator == "second":
        from puhui.synth.second import write_second_city

        n = write_second_city(persons, years, seed, out, start_year=start_year,
                              progress=_progress(True))
        _mark_synthetic(out, generator, persons, years, seed, start_year, dirty)
        click.echo(f"wrote {n['persons']:,} persons, {n['policies']:,} policies, "
                   f"{n['settlements']:,} settlements, {n['lines']:,} lines to {out}")
        _synth_claims(out, seed, claims_file)
        return
    data = synth_city(persons, years, seed, start_year=start_year, dirty=dirty,
                      progress=_progress(True))
    paths = write_fund(data, out)
    paths.append(_mark_synthetic(out, generator, persons, years, seed, start_year, dirty))
    click.echo(f"wrote {len(data.persons):,} persons, {len(data.policies):,} policies, "
               f"{len(data.settlements):,} settlements, {len(data.lines):,} lines to {out}")
    for p in paths:
        click.echo(f"  {p}")
    _synth_claims(out, seed, claims_file)


def _synth_claims(out, seed, wanted: bool) -> None:
    """``--claims``: the claims file with filing dates (puhui.synth.reporting)."""
    if wanted:
        from puhui.synth.reporting import write_claims_file

        path, n = write_claims_file(out, seed)
        click.echo(f"wrote {n:,} claims with their filing dates to {path}")


def _mark_synthetic(out, generator, persons, years, seed, start_year, dirty):
    """``OUT/SYNTHETIC.json``: the folder is a synthetic city and how it was made. The
    reports read it and show a banner; the data files' bytes are not touched, and the
    pricing manifest hashes only the Parquet files."""
    import json
    from pathlib import Path

    from puhui import __version__
    from puhui.reporting import SYNTHETIC_MARKER

    p = Path(out) / SYNTHETIC_MARKER
    p.write_text(json.dumps({
        "synthetic": True, "generator": generator, "persons": persons, "years": years,
        "seed": seed, "start_year": start_year, "dirty": bool(dirty),
        "package_version": __version__,
        "note": "made by `puhui synth`: no real person's data"}, indent=2) + "\n",
        encoding="utf-8")
    return p


def _use_dask(ctx, _param, value):
    """``--dask ADDRESS``: every block map of the command runs on that Dask cluster
    (``local``: a LocalCluster of two processes on this machine)."""
    if value is not None:
        from puhui.execution import Execution, configured, dask_client

        import logging
        import os

        if os.environ.get("PUHUI_DEBUG", "") in ("", "0"):
            # Dask's own log lines are for its developers; what fails is said by puhui
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        ex = Execution(scheduler=value.strip() or value)
        # connected (or the local cluster started) once for the whole command: a
        # scheduler that cannot be reached is said at once, before any work
        client = ctx.with_resource(dask_client(ex, ex.n_workers))
        ctx.with_resource(configured(Execution(scheduler=ex.scheduler, client=client)))
    return value


def _execution_option(f):
    return click.option(
        "--dask", "dask_scheduler", metavar="ADDRESS", default=None, expose_value=False,
        callback=_use_dask,
        help="run the block work on a Dask distributed cluster: its scheduler's address "
             "(tcp://host:8786), or 'local' for two worker processes on this machine; "
             "the same figures as without (docs/scaling.md)")(f)


@cli.command()
@click.argument("directory", type=click.Path())
@click.option("--engine", type=click.Choice(["python", "duckdb"]), default="python",
              show_default=True,
              help="python: the validator of puhui.fund.validate; duckdb: the same rules "
                   "as SQL in DuckDB over the files, out of core (the same report; "
                   "docs/validation.md)")
@click.option("--memory-limit", default=None, metavar="SIZE",
              help="with --engine duckdb: DuckDB's memory limit (for example 4GB); "
                   "beyond it DuckDB spills to a temporary folder")
@_execution_option
def validate(directory, engine, memory_limit):
    """Check a fund-data folder against every rule of the data contract."""
    if engine == "duckdb":
        from puhui.fund.duck import validate_duck

        rep = validate_duck(directory, memory_limit=memory_limit)
    else:
        from puhui.fund.validate import CHUNK_ROWS, default_workers, validate_dir

        # settlements by chunks of row groups in two processes: the same report, less memory
        rep = validate_dir(directory, chunk_rows=CHUNK_ROWS, workers=default_workers())
    if rep.ok:
        rows = ", ".join(f"{n:,} {t}" for t, n in rep.rows.items())
        click.echo(f"{directory}: valid ({rows})")
        return
    from puhui.fund.validate import refusal

    for p in rep.problems:
        click.echo(p.message(), err=True)
    raise InputError(refusal(directory, rep))


@cli.group()
def product():
    """Product files: show, compare and check them."""


def _load_product(name):
    from puhui.benefits.quantities import LineMatcher
    from puhui.products.catalog import resolve_product
    from puhui.products.model import load_product

    p = load_product(resolve_product(name))      # a mistyped id: "did you mean ..."
    LineMatcher(p)            # the lists it names must exist
    return p


@product.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
def product_list(as_json):
    """List the products of the actuarial basis: id, policy period, premium, status."""
    import json

    from puhui.products.catalog import list_products, list_text, products_dir

    entries = list_products()
    if not entries:
        raise InputError(f"{products_dir()}: no product files (*.toml) there")
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=1, ensure_ascii=False))
    else:
        click.echo(list_text(entries))
    bad = [e.id for e in entries if e.error]
    if bad:
        raise InputError(f"{len(bad)} product file{'s' if len(bad) > 1 else ''} cannot be "
                         f"read: {', '.join(bad)} (`puhui product check FILE` says why)")


@product.command("show")
@click.argument("file")
def product_show(file):
    """Print a product's terms as a readable table."""
    from puhui.products.show import show_text

    click.echo(show_text(_load_product(file)))


@product.command("diff")
@click.argument("a")
@click.argument("b")
def product_diff(a, b):
    """Show which terms changed between two product files (for example two years)."""
    from puhui.products.show import diff_text

    click.echo(diff_text(_load_product(a), _load_product(b)))


@product.command("check")
@click.argument("files", nargs=-1, required=True)
def product_check(files):
    """Check product files (or basic-insurance rule files); exit 2 with the file, table
    and key of the first error."""
    from puhui.products.model import is_rule_file
    from puhui.tiers.basic import load_scheme

    for f in files:
        if is_rule_file(f):
            s = load_scheme(f)
            click.echo(f"{s.path}: ok ({s.id}, basic-insurance rule file, "
                       f"{len(s.layers)} layers)")
            continue
        p = _load_product(f)
        click.echo(f"{p.path}: ok ({p.id}, {len(p.benefits)} benefits)")


@cli.group()
def claims():
    """Payout batches and direct payouts, recorded in the ledger."""


@claims.command("run")
@click.option("--product", "product_file", required=True, help="product file (path or id)")
@click.option("--data", "data_dir", type=click.Path(), required=True, help="fund-data folder")
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
@click.option("--batch", "batch_id", required=True, help="batch id (re-run it to resume)")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--mode", type=click.Choice(["claimed", "proactive"]), default="claimed",
              show_default=True)
@click.option("--claims", "claims_file", type=click.Path(dir_okay=False), default=None,
              help="mode claimed: Parquet or CSV with a setl_id column, the settlements "
                   "a claim was filed for (default: every settlement counts as claimed)")
@click.option("--block-persons", type=click.IntRange(1), default=None, hidden=True,
              help="people per unit of work (tuning and tests)")
@click.option("--workers", type=click.IntRange(1, 2), default=None,
              help="processes adjudicating blocks of people (default: 2 where the machine "
                   "has 2 cores or more, else 1)")
@click.option("--period", default=None, metavar="FROM:TO",
              help="the period the data covers (default: its first to last settlement "
                   "date); a payment for a settlement outside it is never taken back")
@click.option("--complete", is_flag=True, default=False,
              help="the data holds every settlement of its period: take back what a "
                   "settlement it lacks was paid (without it, such a batch is refused)")
@click.option("--as-of", "as_of", default=None, metavar="DATE",
              help="the business date the batch's payments are effective for (default: "
                   "the data's last settlement date, or the end of --period)")
@_lang_option
@_execution_option
def claims_run(product_file, data_dir, url, batch_id, out, mode, claims_file=None,
               block_persons=None, workers=None, period=None, complete=False, lang="en",
               as_of=None):
    """Adjudicate the data's settlements against its policies and record the payouts."""
    import json
    import os
    from pathlib import Path

    from puhui.claims.batch import parse_period, read_claims_file, run_batch

    product = _load_product(product_file)
    _out_dir(out)
    if workers is None:
        workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    if claims_file is not None and mode != "claimed":
        raise click.UsageError("--claims goes with --mode claimed")
    claims, filings = (read_claims_file(claims_file) if claims_file is not None
                       else (None, None))
    bar = None

    def progress(done, total):
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=total, label="blocks of people", file=sys.stderr)
        bar.update(done - bar.pos)


    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    from puhui.claims.eob_file import EobWriter
    from puhui.claims.report import render

    eob = EobWriter(outp / "eob.parquet", product)
    extra = {"block_persons": block_persons} if block_persons else {}
    try:
        res = run_batch(product, product.path, data_dir, url, batch_id, mode,
                        progress=progress, eob_sink=eob, claims=claims, workers=workers,
                        period=parse_period(period) if period is not None else None,
                        complete=complete, as_of=as_of, filings=filings,
                        **extra)
    finally:
        eob.close()               # the EOB's footer: the blocks written are readable
    if bar is not None:
        bar.render_finish()
    (outp / "summary.json").write_text(json.dumps(res.summary, indent=2, ensure_ascii=False),
                                       encoding="utf-8")
    if product.co_insurers:                     # co-insurance: each insurer's shares
        _write_batch_shares(url, batch_id, outp, res.summary["insurers"])
    from puhui.excel import write_batch_workbook

    write_batch_workbook(res.summary, outp / "summary.xlsx")     # for finance teams
    lean, reasons = eob.report_inputs()
    lean = res.eob if lean is None else lean
    from puhui.reporting import synthetic_marker

    (outp / "report.html").write_text(render(lean, res.summary, reasons, lang=lang,
                                             synthetic=synthetic_marker(data_dir)),
                                      encoding="utf-8")
    s = res.summary
    click.echo(f"batch {batch_id} ({mode}, as of {s['as_of']}): "
               f"{s['settlements_in']:,} settlements, "
               f"paid {s['paid_this_batch_yuan']:,.2f} yuan in this batch; "
               f"{', '.join(f'{k} {v:,}' for k, v in s['settlements_by_status'].items())}")
    click.echo(f"  {outp / 'eob.parquet'}\n  {outp / 'summary.json'} (and summary.xlsx)\n"
               f"  {outp / 'report.html'}")
    if "insurers" in s:
        click.echo(f"  {outp / 'eob_shares.parquet'}\n  {outp / 'insurers.csv'} (co-insurers)")
    for row in s.get("insurers", []):
        click.echo(f"  {row['id']}{' (lead)' if row['lead'] else ''} {row['share']:.2%}: "
                   f"{row['paid_this_batch_yuan']:,.2f} yuan")
    for w in s.get("warnings", []):
        click.echo(f"warning: {w}", err=True)


def _write_batch_shares(url: str, batch_id: str, outp, insurers: list[dict]) -> None:
    """``OUT/eob_shares.parquet``: every co-insurer's share (yuan) of each of the batch's
    entries, keyed as the EOB's rows (setl_id, applies_to, benefit); and
    ``OUT/insurers.csv``: what the batch paid each insurer."""
    from puhui.claims import ledger
    from puhui.fund.files import write_parquet

    con = ledger.connect(url, must_exist=True)
    try:
        df = ledger.batch_shares(con, batch_id)
    finally:
        con.close()
    df["share_amt"] = df.pop("share_fen") / 100
    write_parquet(df, outp / "eob_shares.parquet")
    import pandas as pd

    pd.DataFrame(insurers, columns=["id", "name", "share", "lead", "entries",
                                    "paid_this_batch_yuan"]).to_csv(outp / "insurers.csv",
                                                                    index=False)


@claims.command("recoveries")
@click.option("--product", "product_file", required=True, help="product file (path or id)")
@click.option("--data", "data_dir", type=click.Path(), required=True,
              help="the fund-data folder the batches ran on (death dates, settlement dates "
                   "and lines)")
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
@click.option("--as-of", "as_of", required=True, help="the date the outcomes are known to "
              "(YYYY-MM-DD)")
@click.option("--batch", "batch_id", required=True, help="batch id of this booking")
@click.option("--out", type=click.Path(file_okay=False), required=True)
def claims_recoveries(product_file, data_dir, url, as_of, batch_id, out):
    """Refunds due to the product under its drugs' outcome-based agreements, booked in
    the ledger as recoveries (target minus booked: a re-run books nothing)."""
    import json
    from pathlib import Path

    import pandas as pd

    from puhui.claims.recoveries import run_recoveries

    try:
        day = pd.Timestamp(as_of).as_unit("ns")     # the dates the fund data can hold
    except ValueError:
        raise InputError(f"--as-of {as_of!r}: not a date; give YYYY-MM-DD") from None
    if pd.isna(day):                        # "", "NaT" parse as no date at all
        raise InputError(f"--as-of {as_of!r}: not a date; give YYYY-MM-DD")
    product = _load_product(product_file)
    _out_dir(out)
    res = run_recoveries(product, data_dir, url, batch_id, day)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    fen = ["cost_fen", "refund_fen", "booked_fen", "delta_fen"]
    lines = res.lines.assign(cost_amt=res.lines["cost_fen"] / 100,
                             refund_amt=res.lines["refund_fen"] / 100,
                             booked_before_amt=res.lines["booked_fen"] / 100,
                             booked_now_amt=res.lines["delta_fen"] / 100)
    lines.drop(columns=fen).to_csv(outp / "recoveries.csv", index=False)
    (outp / "recoveries.json").write_text(json.dumps(res.summary, indent=2, ensure_ascii=False),
                                          encoding="utf-8")
    s = res.summary
    click.echo(f"recoveries {batch_id} as of {s['as_of']}: due {s['due_yuan']:,.2f} yuan, "
               f"booked now {s['booked_now_yuan']:,.2f}")
    for a in s["agreements"]:
        click.echo(f"  {a['agreement']} ({a['endpoint']}): {a['patients']} patient(s), due "
                   f"{a['due_yuan']:,.2f}, booked now {a['booked_now_yuan']:,.2f}")
    for c in s["caps"]:
        click.echo(f"  {c['cap']}: spending {c['spending_yuan']:,.2f} against a cap of "
                   f"{c['cap_yuan']:,.2f}, clawback {c['clawback_yuan']:,.2f} ({c['status']})")
    click.echo(f"  {outp / 'recoveries.csv'}\n  {outp / 'recoveries.json'}")


@claims.command("direct")
@click.option("--product", "product_file", required=True)
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
@click.option("--settlement", "settlement_file", type=click.Path(exists=True, dir_okay=False),
              required=True, help="one settlement as JSON (with 'lines' where there are any)")
def claims_direct(product_file, url, settlement_file):
    """Adjudicate one settlement at once against the ledger and record it; a settlement
    with refund_of is a reversal of one the ledger decided: applied at once (the policy
    year adjudicated again, the differences written)."""
    import json

    from puhui.claims.direct import pay_or_reverse, settlement_json

    try:
        with open(settlement_file, "rb") as fh:
            settlement = settlement_json(fh.read(), settlement_file)
    except OSError as exc:
        raise InputError(f"{settlement_file}: cannot be read ({exc.strerror})") from None
    # a reversal (refund_of) is applied at once; any other settlement paid directly
    result = pay_or_reverse(_load_product(product_file), url, settlement)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@claims.command("release")
@click.option("--ledger", "url", required=True)
@click.option("--setl-id", "setl_id", required=True, help="the held settlement (its EOB row "
              "says held for review with an F_ code)")
@click.option("--reason", required=True, help="why the hold is released (the review's "
              "finding; kept in the ledger and its audit, no personal data)")
def claims_release(url, setl_id, reason):
    """Release a settlement a batch held for review (fraud or quality flags): the next
    batch whose data holds it, or a reversal at once re-adjudicating the person's policy
    year, pays what is due for it; until then it keeps what it was paid before the hold."""
    from puhui.claims import ledger
    from puhui.fund import privacy

    setl_id, reason = setl_id.strip(), reason.strip()
    if not setl_id or not privacy.is_token(setl_id):
        raise InputError("--setl-id: give the settlement's setl_id (a pseudonymous token); "
                         "the value is not shown")
    if not reason or len(reason) > 500:
        raise InputError("--reason: say why the hold is released (1 to 500 characters)")
    rule = privacy.check_value(reason)
    if rule is not None:
        raise InputError(f"--reason: looks like personal data ({rule}); say why without "
                         f"it. Nothing was changed; the value is not shown")
    con = ledger.connect(url, must_exist=True)
    try:
        with ledger.unit_of_work(con):           # the whole ledger: a rare command
            row = ledger.release_hold(con, setl_id, reason, _who())
            ledger.audit(con, "claims release", row[2], setl_id=setl_id, code=row[1],
                         reason=reason)
    finally:
        con.close()
    click.echo(f"released the hold on {setl_id} ({row[1]}, held by batch {row[2]}); the "
               f"next batch whose data holds it, or a reversal for the person, pays what "
               f"is due")


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:          # noqa: BLE001 - no user name in some containers
        return "unknown"


@cli.group("ledger")
def ledger_group():
    """The payout ledger: load policies, status, export payments."""


@ledger_group.command("load")
@click.option("--data", "data_dir", type=click.Path(), required=True)
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
def ledger_load(data_dir, url):
    """Load the policies of a fund-data folder into the ledger."""
    from puhui.claims import ledger
    from puhui.fund.files import read_table
    from puhui.fund.schema import POLICIES
    from puhui.fund.validate import validate_dir

    bad = [p for p in validate_dir(data_dir).problems if p.file == POLICIES.file
           or p.kind == "privacy"]
    if bad:
        raise InputError("\n".join(p.message() for p in bad))
    from puhui.claims.batch import with_claim_free_years

    pol = read_table(data_dir, POLICIES)
    con = ledger.connect(url)
    pol, _ = with_claim_free_years(con, pol, pol)
    with ledger.unit_of_work(con):
        n = ledger.upsert_policies(con, pol)
        ledger.audit(con, "ledger load", data=str(data_dir), policies=n)
    click.echo(f"loaded {n:,} policies into {ledger.shown_url(url)}")


@ledger_group.command("status")
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
def ledger_status(url):
    """Batches, entries and net paid in the ledger."""
    from puhui.claims import ledger

    con = ledger.connect(url, must_exist=True)
    n_pol, batches, total = ledger.status(con)
    held, released = ledger.holds_count(con)
    click.echo(f"{ledger.shown_url(url)}: {n_pol:,} policies")
    for b, mode, status, n, amt in batches:
        click.echo(f"  batch {b} ({mode}, {status}): {n:,} entries, net {amt / 100:,.2f} yuan")
    click.echo(f"  net paid: {total / 100:,.2f} yuan")
    if held or released:
        click.echo(f"  held for review: {held:,} settlement(s); released after review: "
                   f"{released:,}")


@ledger_group.command("prune-idempotency")
@click.option("--ledger", "url", required=True)
@click.option("--older-than", "days", type=click.IntRange(1, 3650), required=True,
              help="days: the answers kept under Idempotency-Keys recorded before then "
                   "are forgotten")
def ledger_prune_idempotency(url, days):
    """Forget old answers kept under the service's Idempotency-Keys (the table grows by one
    row a keyed request). A retry under a forgotten key is decided again: a settlement
    already decided is answered from the ledger (200), never paid twice."""
    import datetime as dt

    from puhui.claims import ledger

    con = ledger.connect(url, must_exist=True)
    before = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).isoformat(
        timespec="microseconds")                     # the form of the ledger's times
    with ledger.unit_of_work(con):
        n = ledger.prune_idempotency(con, before)
        ledger.audit(con, "ledger prune-idempotency", before=before, forgotten=n)
    click.echo(f"forgot {n:,} answers kept under Idempotency-Keys recorded before {before}")


@ledger_group.command("export")
@click.option("--ledger", "url", default="sqlite:///ledger.db", show_default=True)
@click.option("--out", "out_file", required=True, help="FILE.parquet or FILE.csv")
def ledger_export(url, out_file):
    """Write every payment entry (signed) as a payment file."""
    from puhui.claims import ledger

    if not out_file.endswith((".parquet", ".csv")):
        raise InputError(f"{out_file}: the payment file ends .parquet or .csv")
    con = ledger.connect(url, must_exist=True)
    _out_file(out_file)
    df = ledger.export_payments(con)
    shares = ledger.export_shares(con)
    _write_table(df, out_file)
    click.echo(f"wrote {len(df):,} entries to {out_file}")
    if len(shares):           # co-insurance (schema 7): each insurer's share of each entry
        stem, ext = out_file.rsplit(".", 1)
        _write_table(shares, f"{stem}.shares.{ext}")
        click.echo(f"wrote {len(shares):,} shares of co-insurers to {stem}.shares.{ext}")


def _write_table(df, out_file: str) -> None:
    """A frame as FILE.parquet or FILE.csv."""
    if out_file.endswith(".parquet"):
        from puhui.fund.files import write_parquet

        write_parquet(df, out_file)
    elif out_file.endswith(".csv"):
        df.to_csv(out_file, index=False)
    else:
        raise InputError(f"{out_file}: the payment file ends .parquet or .csv")


def _ledger_and_product(command):
    """The ``--ledger`` and ``--product`` options of the commands that read a product's
    payments from an existing ledger (reserve, monitor)."""
    command = click.option("--product", "product_id", required=True,
                           help="product id, as the ledger's policies name it")(command)
    return click.option("--ledger", "url", required=True,
                         help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (the "
                              "ledger must exist)")(command)


@cli.command()
@_ledger_and_product
@click.option("--as-of", "as_of", required=True, metavar="DATE",
              help="the valuation date: payments effective on or before it count")
@click.option("--by", type=click.Choice(["month", "quarter"]), default="month",
              show_default=True, help="origin and development periods")
@click.option("--method", type=click.Choice(["chainladder", "bf", "capecod", "all"]),
              default="chainladder", show_default=True)
@click.option("--loss-ratio", "loss_ratio", type=_Finite(), default=None,
              help="the priced loss ratio (fraction; pricing.json's expected_loss_ratio): "
                   "Bornhuetter-Ferguson's prior, Cape Cod's comparison")
@click.option("--tail", type=click.Choice(["none", "exponential", "inverse_power"]),
              default="none", show_default=True,
              help="a curve fitted to the development factors, extrapolated beyond the "
                   "triangle's last age (docs/reserving.md)")
@click.option("--tail-factor", "tail_factor", type=_Finite(min=1.0), default=None,
              metavar="F", help="a tail factor >= 1 given from outside the triangle (an "
                   "actuary's judgement, an earlier product year's development), for "
                   "every method; not with --tail")
@click.option("--triangle", type=click.Choice(["paid", "reported"]), default="paid",
              show_default=True, help="paid: by the payments' business dates; reported: "
              "by the dates claims were filed (recorded from claims files with filed_date): "
              "its IBNR is the claims not yet filed")
@click.option("--bootstrap", type=int, default=None, metavar="N",
              help="the chain ladder's over-dispersed Poisson bootstrap with N "
                   "simulations (10 to 100,000): the IBNR's mean, s.d. and quantiles")
@click.option("--seed", type=int, default=None, metavar="S",
              help="the bootstrap's seed (default 20240101): the same seed gives the "
                   "same figures")
@click.option("--out", type=click.Path(file_okay=False), required=True)
def reserve(url, product_id, as_of, by, method, loss_ratio, tail, tail_factor, triangle,
            bootstrap, seed, out):
    """IBNR of a product from the ledger's paid triangle at an as-of date
    (docs/reserving.md): reserve.json and summary.md."""
    from puhui.reserve_run import reserve as run_reserve
    from puhui.reserve_run import write_outputs

    _out_dir(out)
    res = run_reserve(url, product_id, as_of, by=by, method=method, loss_ratio=loss_ratio,
                      tail=None if tail == "none" else tail, tail_factor=tail_factor,
                      bootstrap=bootstrap, seed=seed, triangle=triangle)
    j, m = write_outputs(res, out)
    for name, r in res["methods"].items():
        if isinstance(r, str):
            click.echo(f"{name}: {r}")
        else:
            se = r.get("std_err_total_yuan")
            click.echo(f"{name}: IBNR {r['ibnr_total_yuan']:,.2f} yuan"
                       + (f" (s.e. {se:,.2f})" if se is not None else ""))
            if "bootstrap" in r:
                b = r["bootstrap"]
                click.echo(f"  bootstrap: mean {b['mean_yuan']:,.2f}, s.d. "
                           f"{b['std_dev_yuan']:,.2f}, 99.5% "
                           f"{b['quantiles_yuan']['99.5%']:,.2f} yuan")
    click.echo(f"  {j}\n  {m}")
    for w in res["warnings"]:
        click.echo(f"warning: {w}", err=True)


@cli.command()
@_ledger_and_product
@click.option("--as-of", "as_of", required=True, metavar="DATE",
              help="the date the year is seen at: payments effective on or before it count")
@click.option("--pricing", "pricing_file", required=True, metavar="PRICED_DIR/pricing.json",
              help="the product's pricing.json (puhui price): pure premium by benefit, "
                   "expected loss ratio, process sd")
@click.option("--method", type=click.Choice(["chainladder", "bf", "capecod"]),
              default="chainladder", show_default=True, help="the IBNR the report uses")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
def monitor(url, product_id, as_of, pricing_file, method, out, lang):
    """A product year to date (docs/reserving.md): earned premium, paid, IBNR, the
    comprehensive loss ratio, actual against priced by benefit and month, the
    premium-deficiency test; monitor.json, monitor.md and monitor.html."""
    from puhui.monitor_run import monitor as run_monitor
    from puhui.monitor_report import write_outputs

    _out_dir(out)
    res = run_monitor(url, product_id, as_of, pricing_file, method)
    paths = write_outputs(res, out, lang)
    lr = res["comprehensive_loss_ratio"]
    iv = lr["interval"]
    click.echo(f"{product_id} as of {res['as_of']}: earned {res['earned_premium_yuan']:,.2f}"
               f" yuan, paid {res['paid_yuan']:,.2f}, IBNR ({method}) "
               f"{res['ibnr_yuan']:,.2f}; loss ratio {_pct(lr['value'])} (90 % "
               f"{_pct(iv['lower'])} to {_pct(iv['upper'])}; priced {_pct(lr['priced'])})")
    for m in res["by_month"]:
        if m["signal"] == "above":
            click.echo(f"  {m['month']}: A/E {m['actual_to_expected']:.2f} above its band "
                       f"(to {m['band']['upper']:.2f})")
    d = res["premium_deficiency"]
    click.echo(f"premium deficiency for the rest of the year: {d['deficiency_yuan']:,.2f} "
               f"yuan" + (" (deficient)" if d["deficient"] else ""))
    click.echo("".join(f"  {p}\n" for p in paths), nl=False)
    for w in res["warnings"]:
        click.echo(f"warning: {w}", err=True)


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


@cli.command()
@click.option("--product", "product_file", required=True)
@click.option("--ledger", "url", required=True,
              help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (policies loaded)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (loopback by default: put a TLS proxy in front "
                   "to serve a network)")
@click.option("--port", type=click.IntRange(1, 65535), default=8700, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="server processes (a settlement's work is Python: one process uses "
                   "one core)")
def serve(product_file, url, host, port, workers):
    """Direct settlement over HTTP (docs/service.md): pre-settlement, settlement,
    explanations of benefit and accumulators, against the ledger."""
    from puhui.service import serve as run_service

    run_service(_load_product(product_file), url, host, port, workers)


@cli.group("keys")
def keys_group():
    """API keys of the service, kept in the ledger (only their SHA-256)."""


@keys_group.command("create")
@click.option("--ledger", "url", required=True)
@click.option("--scope", type=click.Choice(["settle", "read"]), required=True,
              help="settle: pre-settlement, settlement and reads; read: reads only")
@click.option("--name", required=True, help="who holds the key (shown in the audit log)")
def keys_create(url, scope, name):
    """Make a key; its secret is printed once and cannot be shown again."""
    from puhui.claims import ledger

    if not name.strip() or len(name) > 100 or not name.isprintable():
        raise InputError("--name: 1 to 100 printable characters")
    # an existing ledger (its policies loaded first): a mistyped path must not make one
    con = ledger.connect(url, must_exist=True)
    with ledger.unit_of_work(con):
        key_id, secret = ledger.create_api_key(con, name.strip(), scope)
        ledger.audit(con, "keys create", key_id=key_id, scope=scope, name=name.strip())
    click.echo(secret)
    click.echo(f"key {key_id} ({scope}) for {name.strip()}: keep the line above secret; "
               f"it is shown only now", err=True)


@keys_group.command("list")
@click.option("--ledger", "url", required=True)
def keys_list(url):
    """The keys: id, name, scope, made, revoked (never the secrets)."""
    from puhui.claims import ledger

    for key_id, name, scope, made, revoked in ledger.api_keys(ledger.connect(url,
                                                                             must_exist=True)):
        click.echo(f"{key_id}\t{scope}\t{name}\tmade {made}" +
                   (f"\trevoked {revoked}" if revoked else ""))


@keys_group.command("revoke")
@click.argument("key_id")
@click.option("--ledger", "url", required=True)
def keys_revoke(key_id, url):
    """Revoke a key: requests with it are refused from now on."""
    from puhui.claims import ledger

    con = ledger.connect(url, must_exist=True)
    with ledger.unit_of_work(con):
        if not ledger.revoke_api_key(con, key_id):
            raise InputError(f"no key {key_id!r} that is not revoked ('puhui keys list')")
        ledger.audit(con, "keys revoke", key_id=key_id)
    click.echo(f"revoked {key_id}")


def _pricing_inputs(f):
    """The options ``price`` and ``backtest`` share: data, out, seed, assumptions."""
    for opt in reversed((
            click.option("--data", "data_dir", type=click.Path(), required=True,
                         help="fund-data folder"),
            click.option("--out", type=click.Path(file_okay=False), required=True),
            click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0,
                         show_default=True,
                         help="seed of the interval's simulation (same seed, same figures)"),
            click.option("--assumptions", "assumptions_file", type=click.Path(), default=None,
                         help="assumptions file (default actuarial/assumptions/pricing.toml)"))):
        f = opt(f)
    return f


def _risk_transfer_line(rt: dict) -> str:
    """``puhui price``'s line on the net position under a treaty set."""
    if "net" not in rt:
        return f"risk transfer ({rt['file']}): {rt['note']}"
    g, n = rt["gross"], rt["net"]
    iv = n["loss_ratio_interval"]
    q = f"{rt['capital_quantile']:.1%}"
    lr = (f"net expected loss ratio {n['expected_loss_ratio']:.1%} ({iv['level']:.0%} "
          f"interval {iv['lower']:.1%} to {iv['upper']:.1%})"
          if n["expected_loss_ratio"] is not None else f"no net loss ratio: {n.get('note')}")
    return (f"risk transfer ({rt['file']}): net premium {n['premium_per_policy']:,.2f} of "
            f"{g['premium_per_policy']:,.2f} yuan per policy; {lr}; capital at {q} "
            f"{n['capital_total']:,.2f} yuan net, {g['capital_total']:,.2f} "
            f"gross").replace("%", " %")


@cli.command()
@click.option("--product", "product_file", required=True, multiple=True,
              help="product file (path or id); repeat it to price versions of one product "
                   "jointly (a person takes at most one): OUT/versions.json and "
                   "OUT/<product_id>/pricing.json")
@_pricing_inputs
@click.option("--policies", type=click.IntRange(1), default=None,
              help="policies to price the interval for (default: expected enrolment)")
@click.option("--no-backtest", is_flag=True,
              help="leave out the backtest (by default the last data year is priced from "
                   "the years before it and set against what its enrollees cost)")
@click.option("--backtest-all-years", is_flag=True,
              help="backtest every data year that has earlier years, not the last alone "
                   "(as `puhui backtest`; each year is one more pricing)")
@click.option("--treaties", "treaties", type=click.Path(), default=None,
              help="treaty set (a file, or a name in actuarial/treaties/): pricing.json's "
                   "risk_transfer, gross and net of each treaty in order")
@_lang_option
@_execution_option
def price(product_file, data_dir, out, seed, assumptions_file, policies, no_backtest=False,
          backtest_all_years=False, lang="en", treaties=None):
    """Price a product on fund data: OUT/pricing.json, report.html, manifest.json."""
    from pathlib import Path

    from puhui.pricing.run import run_price

    if no_backtest and backtest_all_years:
        raise click.UsageError("--no-backtest and --backtest-all-years: give one of them")
    if isinstance(product_file, str):        # one product given by ctx.invoke (demo)
        product_file = (product_file,)
    if len(product_file) > 1 and treaties is not None:
        raise click.UsageError("--treaties is for one product; price each version with "
                               "its own --product and --treaties")
    if len(product_file) > 1:
        if backtest_all_years:
            raise click.UsageError("--backtest-all-years is for one product; back-test each "
                                   "version with puhui backtest --product FILE")
        return _price_versions(product_file, data_dir, out, seed, assumptions_file, policies,
                               lang)
    product = _load_product(product_file[0])
    _out_dir(out)
    f = run_price(product.path, data_dir, out, seed=seed, assumptions_file=assumptions_file,
                  policies=policies, progress=_progress(True),
                  backtest="none" if no_backtest else "all" if backtest_all_years else "last",
                  lang=lang, treaties=treaties)
    gross = f["gross_premium"]
    gross_text = (f"{gross:,.2f} yuan" if isinstance(gross, (int, float))
                  else "by cell (see pricing.json)")
    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    iv = f["loss_ratio_interval"]
    click.echo(f"{f['product_id']}: pure premium {f['pure_premium']['total']:,.2f} yuan, "
               f"gross premium {gross_text}; expected loss ratio "
               f"{pct(f['expected_loss_ratio'])} at the {f['loss_ratio_basis']} "
               f"({iv['level']:.0%} interval {pct(iv['lower'])} to {pct(iv['upper'])})")
    eq = f.get("equilibrium")
    if eq:
        def fixed_point(q):
            return (f"{q['premium']:,.2f} yuan ({q['policies']:,.0f} policies)"
                    if q["premium"] is not None else "none (nobody insured)")

        click.echo(f"  enrolment: {f['enrolment']['mode']}, {f['policies']:,} policies; "
                   f"equilibrium gross premium, first year {fixed_point(eq)}, long run "
                   f"{fixed_point(eq['long_run'])}")
    if "lifetime" in f:
        click.echo("  lifetime, level gross premium by entry age, no lapse (with lapse): "
                   + ", ".join(f"{e['entry_age']}: {e['level_gross_premium']:,.2f} "
                               f"({e['level_gross_premium_with_lapse']:,.2f})"
                               for e in f["lifetime"]["entry_ages"]))
        lr = f["lifetime"].get("loss_ratio_at_filed_schedule")
        if lr:
            click.echo(f"  lifetime, loss ratio at the filed schedule: {pct(lr['entrants_mix'])} "
                       f"over the entrants' mix, {pct(lr['first_year_eligible_mix'])} in the "
                       f"first year")
    if "risk_transfer" in f:
        click.echo(f"  {_risk_transfer_line(f['risk_transfer'])}")
    bt = f.get("backtest")
    if bt is not None and not bt["years"]:
        click.echo(f"  backtest: none; {bt['reason']}")
    for y in (bt or {}).get("years", []):
        click.echo(f"  backtest {_backtest_line(y)}")
    for n in f["notes"]:
        click.echo(f"  note: {n}")
    click.echo(f"  {Path(out) / 'pricing.json'} (the premium tables in Excel: premium.xlsx)\n"
               f"  {Path(out) / 'report.html'}\n  {Path(out) / 'manifest.json'}")


def _price_versions(product_files, data_dir, out, seed, assumptions_file, policies,
                    lang="en"):
    """``price`` with several ``--product``: the versions priced jointly
    (:mod:`puhui.pricing.versions`)."""
    from pathlib import Path

    from puhui.pricing.versions import run_versions

    if policies is not None:
        raise InputError("--policies is for one product; the versions' policies come from "
                         "their joint choice: leave it out")
    files = [_load_product(p).path for p in product_files]
    _out_dir(out)
    j = run_versions(files, data_dir, out, seed=seed, assumptions_file=assumptions_file,
                     progress=_progress(True), lang=lang)

    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    for v in j["versions"]:
        e = v["at_equilibrium"]
        eq = ("none" if not e or e["premium"] is None else
              f"{e['premium']:,.2f} yuan, {e['policies']:,.0f} policies, loss ratio "
              f"{pct(e['loss_ratio'])}")
        click.echo(f"{v['product_id']}: at the filed {v['filed_premium']:,.2f} yuan "
                   f"{v['at_filed']['policies']:,.0f} policies, loss ratio "
                   f"{pct(v['at_filed']['loss_ratio'])}; joint equilibrium {eq}")
    for n in j["notes"]:
        click.echo(f"  note: {n}")
    click.echo(f"  {Path(out) / 'versions.json'}\n  {Path(out) / 'report.html'}\n"
               f"  {Path(out) / 'manifest.json'}\n  "
               + "\n  ".join(str(Path(out) / v['product_id'] / 'pricing.json')
                             for v in j["versions"]))


@cli.command()
@click.option("--product", "product_files", required=True, multiple=True,
              help="product file (path or id); repeat it to give each year its own product "
                   "(a year without one is priced under the first, its period moved)")
@_pricing_inputs
@_lang_option
@_execution_option
def backtest(product_files, data_dir, out, seed, assumptions_file, lang="en"):
    """Price each data year from the years before it and set the price against what
    that year's enrollees cost: OUT/backtest.json, backtest.xlsx and report.html."""
    from pathlib import Path

    from puhui.pricing.backtest import run_backtest

    files = [_load_product(p).path for p in product_files]
    _out_dir(out)
    r = run_backtest(files, data_dir, out, seed=seed, assumptions_file=assumptions_file,
                     progress=_progress(True), lang=lang)
    for y in r["years"]:
        click.echo(_backtest_line(y))
    click.echo(f"  {Path(out) / 'backtest.json'} (in Excel: backtest.xlsx)\n"
               f"  {Path(out) / 'report.html'}")


def _backtest_line(y: dict) -> str:
    """One backtest year on one line (``puhui backtest`` and ``puhui price``)."""
    ae = y["ae"]["total"]
    return (f"{y['year']} (priced from {', '.join(map(str, y['data_years']))}): pure "
            f"premium {y['priced_pure_premium']['total']:,.2f} yuan, realised "
            f"{_yuan_or_na(y['realised_cost']['total'])} per policy, A/E "
            f"{'n/a' if ae is None else f'{ae:.3f}'}; policies predicted "
            f"{y['policies_predicted']:,}, actual {y['policies_actual']:,}; prediction "
            f"interval " + {True: "covers", False: "misses", None: "n/a"}[
                y['interval']['covers']] + _at_realised_year2(y.get("at_realised_year2")))


def _at_realised_year2(z: dict | None) -> str:
    """A launch-year row's price at the year-2 size its year shows, for its line."""
    if not z:
        return ""
    ae = "n/a" if z["ae"] is None else f"{z['ae']:.3f}"
    fills = z.get("fills_size", "yes")
    ra = z.get("renewals_actual")
    return (f"; at the year-2 size the year shows ({z['year2_to_launch']:.3f} x launch): "
            f"{z['policies']:,.0f} policies"
            + ("" if fills == "yes" else f" ({fills}: the mix cannot hold that size)")
            + f", pure premium {z['pure_premium']:,.2f} yuan, A/E {ae}; renewals expected "
            f"{z['renewals']:,.0f}" + ("" if ra is None else f", actual {ra:,}"))


def _yuan_or_na(v) -> str:
    return "n/a" if v is None else f"{v:,.2f} yuan"


@cli.command("what-if")
@click.argument("priced", type=click.Path(file_okay=False))
@click.option("--benefit", required=True, help="the benefit whose terms change")
@click.option("--deductible", type=_Finite(0, _MAX_YUAN), default=None, help="yuan a year")
@click.option("--ratio", type=_Finite(0, 1), default=None)
@click.option("--preexisting-ratio", type=_Finite(0, 1), default=None)
@click.option("--limit", type=_Finite(0, _MAX_YUAN), default=None, help="yuan a year")
@click.option("--drop-drug", "drop_drugs", multiple=True,
              help="take a drug (list code) off a line benefit's list; repeat for more")
def what_if(priced, benefit, deductible, ratio, preexisting_ratio, limit, drop_drugs):
    """Re-price a change of terms or drug list from a `puhui price` run, without refitting."""
    from puhui.pricing.whatif import PricingState, reprice

    if all(v is None for v in (deductible, ratio, preexisting_ratio, limit)) and not drop_drugs:
        raise click.UsageError("give a change: --deductible, --ratio, --preexisting-ratio, "
                               "--limit or --drop-drug")
    state = PricingState.load(priced)
    t = reprice(state, benefit, deductible, ratio, preexisting_ratio, limit, tuple(drop_drugs))
    changes = [f"{k} {v:g}" for k, v in (("deductible", deductible), ("ratio", ratio),
                                          ("pre-existing ratio", preexisting_ratio),
                                          ("limit", limit)) if v is not None]
    if drop_drugs:
        changes.append("off the list: " + ", ".join(drop_drugs))
    click.echo(f"{state.product_id}: {benefit} with {'; '.join(changes) or 'no change'} "
               f"(yuan per policy)")
    click.echo(f"  {'benefit':<16}{'pure before':>14}{'pure after':>14}{'gross before':>14}{'gross after':>14}")
    for _, r in t.iterrows():
        click.echo(f"  {r['benefit']:<16}{r['pure_before']:>14,.2f}{r['pure_after']:>14,.2f}"
                   f"{r['gross_before']:>14,.2f}{r['gross_after']:>14,.2f}")


@cli.command()
@click.argument("manifest", type=click.Path())
@click.option("--data", "data_dir", type=click.Path(), default=None,
              help="the fund-data folder priced, where it is now (default: where the "
                   "manifest says, absolute or relative to the manifest's folder)")
def reproduce(manifest, data_dir):
    """Re-run the pricing a manifest.json describes; exit 0 only if every figure agrees,
    1 if a figure differs, 2 if an input is not there or not the one priced (its hash)."""
    from puhui.pricing.run import reproduce as run_reproduce

    same, diffs = run_reproduce(manifest, progress=_progress(True), data=data_dir)
    if same:
        click.echo(f"{manifest}: reproduced; every figure of pricing.json is identical")
        return
    click.echo(f"{manifest}: NOT reproduced", err=True)
    for d in diffs[:50]:
        click.echo(f"  {d}", err=True)
    sys.exit(1)


@cli.command()
@click.argument("directory", type=click.Path())
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="also write the tables as JSON to this file")
def mortality(directory, out_file):
    """Deaths in a fund-data folder against the CL 2010-2013 tables: A/E by sex and age
    band with 95 % intervals, and a Gompertz force fitted to the experience."""
    import json

    import pandas as pd

    from puhui.fund.validate import CHUNK_ROWS, default_workers, validate_dir
    from puhui.survival.mortality import (
        actual_to_expected,
        fit_gompertz,
        observed_years,
    )

    def span(start, st, who, has_lines):      # each chunk's first and last settlement
        return st["setl_time"].min(), st["setl_time"].max()

    if out_file is not None:
        _out_file(out_file)
    rep = validate_dir(directory, keep=True, chunk_rows=CHUNK_ROWS, workers=default_workers(),
                       settlements_sink=span)
    if not rep.ok:
        raise InputError(f"{directory}: the data breaks the contract; fix it first "
                         f"(`puhui validate {directory}` lists the same):\n{rep.messages()}")
    persons = rep.typed["persons"]
    firsts, lasts = (pd.Series(v).dropna() for v in (rep.take_settlement_values() or [[], []]))
    if len(firsts) == 0:
        raise InputError(f"{directory}: no settlements, so no data years to observe")
    years = range(int(firsts.min().year), int(lasts.max().year) + 1)
    obs = observed_years(persons, years)
    ae, gz = actual_to_expected(obs), fit_gompertz(obs)
    click.echo(f"{directory}: {len(persons):,} people observed over {years[0]}-{years[-1]} "
               f"({len(obs):,} person-years, {int(obs['died'].sum()):,} deaths)")
    click.echo(f"  {'sex':<4}{'table':<6}{'ages':<8}{'person-years':>14}{'deaths':>9}"
               f"{'expected':>10}{'A/E':>7}{'95% interval':>17}")
    for r in ae.itertuples():
        click.echo(f"  {r.gender:<4}{r.table:<6}{r.band:<8}{r.person_years:>14,}{r.deaths:>9,}"
                   f"{r.expected:>10.1f}{r.a_to_e:>7.3f}   {r.lower:.3f}-{r.upper:.3f}")
    for r in gz.itertuples():
        click.echo(f"  Gompertz {r.table} ages {r.min_age}-{r.max_age}: mu(x) = exp({r.a:.3f} "
                   f"+ {r.b:.4f} x)  (se {r.se_a:.3f}, {r.se_b:.4f})")
    if out_file is not None:
        with open(out_file, "w", encoding="utf-8") as fh:
            json.dump({"years": [years[0], years[-1]],
                       "actual_to_expected": ae.round(6).to_dict("records"),
                       "gompertz": gz.round(6).to_dict("records")}, fh, indent=1,
                      default=lambda v: v.item() if hasattr(v, "item") else str(v))
        click.echo(f"  {out_file}")


@cli.command()
@click.argument("directory", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="folder for survival.json and report.html")
@click.option("--max-people", type=click.IntRange(100), default=200_000, show_default=True,
              help="people the Cox models and curves run on at most (a random subset)")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@_lang_option
def survival(directory, out, max_people, seed, lang="en"):
    """Survival models of a fund-data folder with their diagnostics: mortality against
    CL1/CL2 (A/E, Gompertz two ways, Cox on the age scale), persistency (time to lapse)
    and time to first hospital admission; survival.json and report.html."""
    from pathlib import Path

    from puhui.survival.analysis import study_folder, survival_json
    from puhui.survival.report import render

    _out_dir(out)
    res, years = study_folder(directory, max_people=max_people, seed=seed)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    (outp / "survival.json").write_text(survival_json(res.figures) + "\n", encoding="utf-8")
    from puhui.reporting import synthetic_marker

    (outp / "report.html").write_text(render(res, lang=lang,
                                             synthetic=synthetic_marker(directory)),
                                      encoding="utf-8")
    f = res.figures
    click.echo(f"{directory}: {years[0]}-{years[-1]}, {f['mortality']['person_years']:,} "
               f"person-years, {f['mortality']['deaths']:,} deaths; "
               f"first admissions {f['first_admission']['admitted']:,} of "
               f"{f['first_admission']['people']:,} people")
    click.echo(f"  {outp / 'survival.json'}\n  {outp / 'report.html'}")


@cli.command()
def schema():
    """Print the fund-data schema as Markdown (docs/data-schema.md)."""
    from puhui.fund.schema import schema_markdown

    click.echo(schema_markdown())


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def summary(directory):
    """Summarise a fund-data folder and compare it with the published Huhuibao shape."""
    from puhui.fund.files import read_fund
    from puhui.synth.calibration import calibration_table, describe_fund

    from pathlib import Path

    from puhui.fund.privacy import refuse_identifying

    data = read_fund(directory)
    for name, df in (("persons", data.persons), ("policies", data.policies),
                     ("settlements", data.settlements), ("settlement_lines", data.lines)):
        if df is not None:      # the summary prints from the data: anonymised data only
            refuse_identifying(df, str(Path(directory) / f"{name}.parquet"))
    click.echo(describe_fund(data))
    click.echo("")
    click.echo(calibration_table(data))


@cli.command()
@click.option("--data", "data_dir", type=click.Path(), default="data-samples/city",
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="demo-output", show_default=True)
def demo(data_dir, out):
    """The quick-start job on the shipped sample: validate, summarise, claims, pricing."""
    from pathlib import Path

    from puhui.fund.files import read_fund
    from puhui.fund.validate import validate_dir
    from puhui.synth.calibration import calibration_table, describe_fund

    _out_dir(out)
    rep = validate_dir(data_dir)
    if not rep.ok:
        for p in rep.problems:
            click.echo(p.message(), err=True)
        raise InputError(f"{data_dir}: the sample data is not valid")
    click.echo(f"[1/6] validated {data_dir}: " +
               ", ".join(f"{n:,} {t}" for t, n in rep.rows.items()))
    data = read_fund(data_dir)
    text = describe_fund(data) + "\n\n" + calibration_table(data)
    click.echo("[2/6] summary of the fund data\n")
    click.echo(text)
    benefits = _demo_benefits(data, "huhuibao-2025")
    click.echo("\n[3/6] Huhuibao 2025 (actuarial/products/huhuibao-2025.toml) paid on the "
               "sample's 2025 policies\n")
    click.echo(benefits)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.txt").write_text(text + "\n\n" + benefits + "\n", encoding="utf-8")
    click.echo("\n[4/6] claims: the 2024 year (its payouts are the claim-free history of "
               "2025's renewals), then for 2025 a proactive scan and a claimed batch")
    url = f"sqlite:///{Path(out) / 'ledger.db'}"
    for product_id, mode, batch in (("huhuibao-2024", "claimed", "demo-2024"),
                                    ("huhuibao-2025", "proactive", "demo-proactive"),
                                    ("huhuibao-2025", "claimed", "demo-claimed")):
        ctx = click.get_current_context()
        ctx.invoke(claims_run, product_file=product_id, data_dir=data_dir, url=url,
                   batch_id=batch, out=str(Path(out) / batch), mode=mode)
    click.echo("\n[5/6] pricing: Huhuibao 2025, then the elderly cover (entry 60-80, "
               "renewable to 100) over its lifetime, priced on the sample; each with its "
               "backtest: 2025 priced the same way from 2024 alone, against what 2025's "
               "enrollees cost")
    ctx.invoke(price, product_file="huhuibao-2025", data_dir=data_dir,
               out=str(Path(out) / "pricing"), seed=0, assumptions_file=None, policies=None)
    ctx.invoke(price, product_file="elderly-medical-60-80", data_dir=data_dir,
               out=str(Path(out) / "pricing-elderly"), seed=0, assumptions_file=None,
               policies=None)
    click.echo("\n[6/6] monitoring: Huhuibao 2025's year as the ledger has it at 2025-12-31, "
               "against the pricing above (a price for the year after the data: its trend "
               "runs a year ahead); the sample's batches pay on one date, so the IBNR says "
               "nothing (a warning says so): run a claims batch each month for a monitor")
    ctx.invoke(monitor, url=url, product_id="huhuibao-2025", as_of="2025-12-31",
               pricing_file=str(Path(out) / "pricing" / "pricing.json"),
               method="chainladder", out=str(Path(out) / "monitor"), lang="en")
    click.echo(f"\nresults: {Path(out) / 'summary.txt'}; ledger {url}; batch reports "
               f"{Path(out) / 'demo-proactive' / 'report.html'}, "
               f"{Path(out) / 'demo-claimed' / 'report.html'}; pricing reports, with the "
               f"backtest, {Path(out) / 'pricing' / 'report.html'}, "
               f"{Path(out) / 'pricing-elderly' / 'report.html'} (every data year: "
               f"`puhui backtest`); monitoring {Path(out) / 'monitor' / 'monitor.html'}")


def _demo_benefits(data, product_id: str) -> str:
    """Payouts by benefit and reason of a product on the data's policies of that product."""
    import pandas as pd

    from puhui.benefits.calculator import adjudicate
    from puhui.products.model import load_product, product_path

    product = load_product(product_path(product_id))
    pol = data.policies[data.policies["product_id"] == product_id]
    st = data.settlements
    reversed_ids = set(st["refund_of"].dropna())
    st = st[st["refund_of"].isna() & ~st["setl_id"].isin(reversed_ids)]
    st = st[st["psn_no"].isin(pol["psn_no"])
            & st["setl_time"].between(pd.Timestamp(product.start), pd.Timestamp(product.end))]
    long = adjudicate(product, st, pol, data.lines).long()
    t = long.groupby(["benefit", "reason"], sort=False).agg(
        decisions=("payout_amt", "size"), payout=("payout_amt", "sum"))
    rows = [f"  {'benefit':<16}{'reason':<22}{'decisions':>10}{'payout yuan':>16}"]
    for (b, r), x in t.iterrows():
        rows.append(f"  {b:<16}{r:<22}{int(x['decisions']):>10,}{x['payout'] / 100:>16,.2f}")
    total = long["payout_amt"].sum() / 100
    rows.append(f"  {len(pol):,} policies, {len(st):,} settlements of policyholders; paid "
                f"{total:,.2f} yuan ({total / max(len(pol), 1):,.2f} per policy)")
    return "\n".join(rows)


#: errno values that mean the machine, not the user's input, stopped the job
_JOB_ERRNOS = {"ENOSPC", "EDQUOT", "EIO", "ENOMEM", "EMFILE", "ENFILE", "EFBIG"}


def _os_error_message(exc: OSError) -> tuple[str, int]:
    """An OSError as a message naming the path, and its exit code: 1 when the machine
    stopped the job (disk full, I/O error), 2 when the path given cannot be used."""
    import errno as errno_mod

    name = errno_mod.errorcode.get(exc.errno or 0, "")
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or str(exc) or type(exc).__name__
    head = f"{where}: {what}" if where else what
    if name in ("ENOSPC", "EDQUOT", "EFBIG"):
        return (f"{head} (the disk is full); the job stopped part-way: free space or give "
                f"an --out on another disk, then run the same command again", 1)
    if name in _JOB_ERRNOS:
        return f"{head}; the job stopped part-way: run the same command again", 1
    return f"{head}; give a path that exists and that you may read (or write, for --out)", 2


def run(argv=None) -> int:
    """Run the command line and return its exit code; every failure becomes a message on
    stderr: 2 for bad usage or input, 1 for a job that failed, 130 when interrupted. No
    traceback unless ``PUHUI_DEBUG=1`` (for a report). ``main`` and the tests call this."""
    import os

    from puhui.execution import quiet_native_threads

    quiet_native_threads()          # before scikit-learn loads OpenMP (docs/benchmarks.md)
    debug = os.environ.get("PUHUI_DEBUG", "") not in ("", "0")
    try:
        try:
            rv = cli.main(args=argv, prog_name="puhui", standalone_mode=False)
            return rv if isinstance(rv, int) else 0     # --help, --version: click's Exit
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except SystemExit as exc:             # a command's own exit code
            code = exc.code
            if code is None or isinstance(code, int):
                return code or 0
            click.echo(f"error: {code}", err=True)
            return 1
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except click.exceptions.Abort:        # click's form of KeyboardInterrupt
            click.echo("interrupted", err=True)
            return 130
        except (InputError, JobFailed) as exc:
            click.echo(f"error: {exc}", err=True)
            return exc.exit_code
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            return 130
        except BrokenPipeError:               # `puhui schema | head`: the reader left
            return 1
        except MemoryError:
            if debug:
                raise
            click.echo("error: out of memory; the job stopped part-way: run it on a machine "
                       "with more memory (or on less data)", err=True)
            return 1
        except OSError as exc:
            if debug:
                raise
            text, code = _os_error_message(exc)
            click.echo(f"error: {text}", err=True)
            return code
        except UnicodeError as exc:
            if debug:
                raise
            click.echo(f"error: a file or argument is not valid UTF-8 text ({exc}); give "
                       f"UTF-8 input", err=True)
            return 2
        except Exception as exc:             # noqa: BLE001 - the last resort
            if debug:
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc}; please report it with "
                       f"the command line (PUHUI_DEBUG=1 prints the traceback)", err=True)
            return 1
    except KeyboardInterrupt:                 # while printing a message
        return 130
    return 0


def main(argv=None):
    """Console entry point: a message and an exit code for every failure, never a
    traceback (see :func:`run`)."""
    sys.exit(run(argv))
