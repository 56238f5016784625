"""The pricing report: one self-contained HTML page an actuary hands to a regulator.

Data summary, the premium build-up, the interval, actual versus expected (one-way and
by decile: calibration and lift), the model tables with standard errors, the
death-spiral projection, the assumptions with their sources, and notes. No row of any
table describes fewer than ``min_cell_people`` people (10 by default): such rows are
merged into a "(fewer than 10 people)" row or left out, and the page says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.html_figures import new_figure, png_base64



def suppress_small(df: pd.DataFrame, people: str, min_people: int, sums=()) -> tuple[pd.DataFrame, int]:
    """Rows describing fewer than ``min_people`` people are merged into one row (when
    together they reach the threshold, summing ``sums``) or dropped; returns the table
    and how many rows were touched.

    >>> t = pd.DataFrame({"level": ["a", "b", "c"], "people": [50, 4, 3], "x": [1.0, 2.0, 3.0]})
    >>> out, n = suppress_small(t, "people", 10, sums=("x",))
    >>> out["people"].tolist(), n
    ([50], 2)
    """
    small = df[people] < min_people
    if not small.any():
        return df, 0
    keep = df[~small]
    merged = df[small]
    if merged[people].sum() >= min_people:
        row = {c: "" for c in df.columns}
        row.update({people: int(merged[people].sum()),
                    **{c: merged[c].sum() for c in sums}})
        first = df.columns[0]
        row[first] = f"(fewer than {min_people} people each)"
        keep = pd.concat([keep, pd.DataFrame([row])], ignore_index=True)
    return keep, int(small.sum())


def _plots(tables: dict, figures: dict, lr_draws: np.ndarray | None,
           min_people: int = 10) -> dict:
    out: dict = {"one_way": []}
    ow = tables["ae_one_way"]
    for fac, t in ow.groupby("factor", sort=False):
        fig, ax = new_figure(7, 2.4)
        x = np.arange(len(t))
        ax.bar(x - 0.2, t["actual"] / t["people"], width=0.4, label="actual")
        ax.bar(x + 0.2, t["expected"] / t["people"], width=0.4, label="expected")
        ax.set_xticks(x, t["level"].astype(str))
        ax.set_ylabel("yuan per person-year")
        ax.set_title(f"actual vs expected by {fac}")
        ax.legend()
        out["one_way"].append((fac, png_base64(fig)))
    d = tables["ae_deciles"]
    fig, ax = new_figure(7, 2.6)
    ax.plot(d["decile"], d["expected"] / d["people"], marker="o", label="expected")
    ax.plot(d["decile"], d["actual"] / d["people"], marker="s", label="actual")
    ax.set_xlabel("decile of expected cost")
    ax.set_ylabel("yuan per person-year")
    ax.legend()
    out["deciles"] = png_base64(fig)
    if "spiral" in tables:
        fig, ax = new_figure(7, 2.8)
        for name, s in tables["spiral"].groupby("scenario", sort=False):
            ax.plot(s["year"], s["loss_ratio"], marker="o", label=name)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("projection year")
        ax.set_ylabel("loss ratio")
        ax.legend()
        out["spiral"] = png_base64(fig)
    if "lifetime_claims" in tables:
        out.update(_lifetime_plots(tables, figures, min_people))
    if lr_draws is not None and np.isfinite(lr_draws).all():
        fig, ax = new_figure(7, 2.4)
        ax.hist(lr_draws, bins=60)
        ax.axvline(1.0, color="red", lw=0.8)
        ax.set_xlabel("loss ratio (simulated)")
        out["lr"] = png_base64(fig)
    return out


def _lifetime_plots(tables: dict, figures: dict, min_people: int = 10) -> dict:
    out = {}
    c = tables["lifetime_claims"]
    fig, ax = new_figure(7, 2.6)
    ax.plot(c["age"], c["men"], label="men")
    ax.plot(c["age"], c["women"], label="women")
    ax.set_xlabel("attained age")
    ax.set_ylabel("yuan a year (today)")
    ax.set_title("expected claims by attained age")
    ax.legend()
    out["lifetime_claims"] = png_base64(fig)
    young = figures["lifetime"]["step_rated_entry_age"]
    p = tables["lifetime_projection"][young]
    fig, ax = new_figure(7, 3.0)
    ax.plot(p["age"], p["natural_premium"], label="claims of the year (natural premium)")
    ax.plot(p["age"], p["level_premium"], label="level premium")
    ax.plot(p["age"], p["reserve"], label="reserve per policy in force")
    ax.set_xlabel("attained age")
    ax.set_ylabel("yuan")
    ax2 = ax.twinx()
    ax2.plot(p["age"], p["in_force"], color="grey", ls="--", label="in force")
    ax2.set_ylabel("in force per policy written")
    ax.legend(loc="upper left")
    out["lifetime_projection"] = png_base64(fig)
    t = tables.get("lifetime_age_fit")
    if t is not None:
        g = t.assign(five=(t["age"] // 5) * 5)
        g = g.assign(sm=g["smooth"] * g["exposure"], gr=g["graduated"] * g["exposure"],
                     pr=g["prior"] * g["exposure"]).groupby("five").sum(numeric_only=True)
        g = g[g["exposure"] >= min_people]
        if len(g):
            fig, ax = new_figure(7, 2.6)
            ax.plot(g.index, g["actual"] / g["exposure"], marker="s", label="actual (as-if)")
            ax.plot(g.index, g["gr"] / g["exposure"], marker="o", label="graduated")
            if g["pr"].notna().all() and (g["pr"] > 0).any():
                ax.plot(g.index, g["pr"] / g["exposure"], ls="--", label="prior (younger ages)")
            ax.set_xlabel("age (five-year groups, data years)")
            ax.set_ylabel("yuan per person-year")
            ax.legend()
            out["lifetime_age_fit"] = png_base64(fig)
    return out


def _agreement_tables(figures: dict, tb) -> dict:
    from markupsafe import Markup

    ag = figures["drug_agreements"]
    benefits = pd.DataFrame([{"benefit": b, **v} for b, v in ag["benefits"].items()])
    benefits["refund_share"] = benefits["refund_share"].map(lambda v: f"{v:.2%}")
    drugs = pd.DataFrame(ag["drugs"])
    for col in ("expected_refund_share", "share_of_benefit_amounts"):
        drugs[col] = drugs[col].map(lambda v: f"{v:.2%}")
    # a drug taken by fewer people than a report may show: its patient count is hidden
    caps = pd.DataFrame(ag.get("price_volume_caps") or [])
    return {"agreement_caps": tb(caps) if len(caps) else None,
            "agreement_benefits": tb(benefits),
            "agreement_drugs": tb(drugs.assign(treated_patients=drugs[
                "treated_patients"].map(lambda n: f"{n:,}" if n >= 10 or n == 0 else "<10")))}


def _lifetime_tables(figures: dict, tables: dict, tb, min_people: int = 10) -> dict:
    """The report's lifetime tables (yuan, 2 decimals; a duration of lapse with fewer
    than ``min_people`` people at risk is left out)."""
    from markupsafe import Markup

    L = figures["lifetime"]
    entries = pd.DataFrame([{
        "entry age": e["entry_age"], "share of men": e["share_men"],
        "PV of claims": e["pv_claims"], "premium annuity": e["premium_annuity"],
        "level pure": e["level_pure_premium"], "level gross (headline)": e["level_gross_premium"],
        "level gross with lapse (sensitivity)": e["level_gross_premium_with_lapse"],
        "loss ratio at the filed schedule": (f"{e['loss_ratio_at_filed_schedule']:.1%}"
                                             if e["loss_ratio_at_filed_schedule"] else "n/a"),
        "first-year claims": e["first_year_natural_premium"],
        "peak reserve": e["peak_reserve"], "at age": e["peak_reserve_age"],
        "review lag": f"{e['review_lag_share_of_claims']:.1%}",
        **{f"mortality -{m['mortality_reduction']:.0%}": f"{m['change']:+.1%} "
           f"({m['change_with_lapse']:+.1%} with lapse)" for m in e["mortality_improvement"]}}
        for e in L["entry_ages"]])
    one_year = {(g["min_age"], g["max_age"]): g["gross_premium"]
                for g in (figures["gross_premium"] if isinstance(figures["gross_premium"], list)
                          else [])}
    steps = pd.DataFrame([{"ages": f"{s['min_age']}-{s['max_age']}", "pure": s["pure_premium"],
                           "gross": s["gross_premium"],
                           "one-year gross (this run)": one_year.get((s["min_age"], s["max_age"]))}
                          for s in L["step_rated"]])
    target = figures["basis"]["target_loss_ratio"]
    reviews = pd.DataFrame([{"year": r["year"], "entry age": e["entry_age"],
                             "gross": r["premium"] / target}
                            for e in L["entry_ages"] for r in e["review_path"]])
    reviews = reviews.pivot(index="year", columns="entry age", values="gross")
    reviews.columns = [f"entry {c}" for c in reviews.columns]
    reviews = reviews.reset_index()
    bands = pd.DataFrame(L["band_check"])
    lapse = pd.DataFrame(L["basis"]["lapse_by_duration"])
    if len(lapse):
        lapse = lapse[lapse["at_risk"] >= min_people]
    F = L.get("loss_ratio_at_filed_schedule")
    filed = None
    if F:
        filed = pd.DataFrame(F["by_entry_age"])
        filed = filed[filed["entry_age"] % 5 == 0].assign(
            loss_ratio=lambda d: d["loss_ratio"].map(lambda v: f"{v:.1%}"))
    young = L["step_rated_entry_age"]
    p = tables["lifetime_projection"][young]
    p = p[(p["year"] % 5 == 0) | (p["age"] == p["age"].max())]
    return {"lifetime_entries": tb(entries),
            "lifetime_steps": tb(steps),
            "lifetime_reviews": tb(reviews),
            "lifetime_bands": tb(bands),
            "lifetime_lapse": tb(lapse) if len(lapse) else
            Markup("<p>No renewal in the data: the stated rate throughout.</p>"),
            "lifetime_filed": tb(filed) if filed is not None else "",
            "lifetime_projection": tb(p, kinds={"q death": "pct2", "q_death": "pct2",
                                                "lapse": "pct2"}),
            "lifetime_age": young}


def _backtest_tables(figures: dict, tb, min_people: int = 10) -> list:
    """Per backtest year: the priced pure premium against the realised cost per policy
    by benefit and in total, and the policies with the prediction interval. A year of
    fewer than ``min_people`` policies shows no realised figure."""
    from markupsafe import Markup, escape

    _ = getattr(tb, "keywords", {}).get("gettext") or (lambda s: s)
    out = []
    for y in (figures.get("backtest") or {}).get("years", []):
        shown = y["policies_actual"] >= min_people
        rows = [{"benefit": b, "priced pure premium": v,
                 "realised cost per policy": y["realised_cost"].get(b) if shown else None,
                 "A/E": y["ae"].get(b) if shown else None}
                for b, v in y["priced_pure_premium"].items() if b != "total"]
        rows.append({"benefit": "total", "priced pure premium": y["priced_pure_premium"]["total"],
                     "realised cost per policy": y["realised_cost"]["total"] if shown else None,
                     "A/E": y["ae"]["total"] if shown else None})
        t = pd.DataFrame(rows)
        t["A/E"] = t["A/E"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")
        iv = y["interval"]
        level = f"{iv['level']:.0%}".replace("%", " %")
        p = pd.DataFrame([{
            "policies predicted": f"{y['policies_predicted']:,}",
            "policies actual": f"{y['policies_actual']:,}",
            "policies A/E": "" if y["policies_ae"] is None else f"{y['policies_ae']:.3f}",
            _("%(level)s prediction interval (yuan per policy)") % {"level": level}: (
                _("none") if iv["lower"] is None else _("%(start)s to %(end)s") % {
                    "start": f"{iv['lower']:,.2f}", "end": f"{iv['upper']:,.2f}"}),
            "covers the realised cost": _({True: "yes", False: "no", None: "n/a"}[iv["covers"]])}])
        small = ("" if shown else Markup("<p>") + escape(
            _("Fewer than %(n)s policies: the realised cost is not shown.") % {"n": min_people})
            + Markup("</p>"))
        out.append((tb(t) + Markup(small), tb(p)))
    return out


def _validation(tables: dict, min_people: int, tb) -> tuple[list, int]:
    """The out-of-sample checks: per model its folds, calibration and Lorenz curves;
    and how many calibration rows small cells touched."""
    validation, touched = [], 0
    for name, cv in tables.get("validation", []):
        calib, n = suppress_small(cv["calibration"], "people", min_people, ("actual", "expected"))
        touched += n
        fig, ax = new_figure(4.5, 3.2)
        ax.plot(*cv["lorenz_glm"], label=f"GLM (Gini {cv['mean']['gini_glm']:.3f})")
        ax.plot(*cv["lorenz_gbm"], label=f"GBM (Gini {cv['mean']['gini_gbm']:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlabel("share of exposure (lowest predicted first)")
        ax.set_ylabel("share of claims")
        ax.legend()
        validation.append((name, tb(cv["folds"], kinds=dict.fromkeys(
            [c for c in cv["folds"].columns if "deviance" in c], "ratio")),
            tb(calib), png_base64(fig)))
    return validation, touched


def _groups(tables: dict, min_people: int):
    """The pricing groups' table: deductible and limit in yuan ("none" for no limit),
    an event count under the threshold not shown."""
    groups = tables["groups"].drop(columns=["note"], errors="ignore").copy()
    for col in ("deductible", "limit"):
        groups[col] = groups[col].map(lambda v: f"{v:,.0f}" if np.isfinite(v) else "none")
    # an event count is a count of people's claims: under the threshold it is not shown
    groups["events"] = groups["events"].map(
        lambda n: f"{n:,}" if n >= min_people or n == 0 else f"<{min_people}")
    return groups


def _coefficients(tables: dict):
    """The models' terms with their relativity exp(coef) beside the coefficient."""
    c = tables["coefficients"]
    front = [k for k in ("group", "kind", "model", "term", "relativity") if k in c.columns]
    return c[front + [k for k in c.columns if k not in front]]


def render(figures: dict, tables: dict, manifest: dict, assumptions_text: str,
           lr_draws: np.ndarray | None = None, min_people: int = 10, lang: str = "en",
           synthetic: dict | None = None) -> str:
    """The pricing report (template ``pricing.html.j2``) in ``lang`` ("en" or "zh");
    ``synthetic``: the data folder's marker from ``puhui synth`` (a banner says so)."""
    from puhui import __version__
    from puhui.reporting import render as render_page, table_for
    from puhui.reporting.assumptions import assumptions_table

    tb = table_for(lang)
    one_way, n1 = suppress_small(tables["ae_one_way"], "people", min_people, ("actual", "expected"))
    one_way = one_way.assign(ae=one_way["actual"] / one_way["expected"])
    deciles, n2 = suppress_small(tables["ae_deciles"], "people", min_people, ("actual", "expected"))
    tables = {**tables, "ae_one_way": one_way, "ae_deciles": deciles}
    plots = _plots(tables, figures, lr_draws, min_people)
    validation, n3 = _validation(tables, min_people, tb)
    spiral = tables.get("spiral")
    cred, cred_hidden = tables.get("credibility"), 0
    if cred is not None:
        shown = cred["person_years"] >= min_people
        cred_hidden = int((~shown).sum())
        cred = cred[shown].drop(columns=["periods"], errors="ignore")
    a_file = manifest.get("options", {}).get("assumptions") or "actuarial/assumptions/pricing.toml"
    a_file = _repository_path(a_file)
    return render_page(
        "pricing.html.j2", lang, f=figures, m=manifest, plots=plots, version=__version__,
        synthetic=synthetic, gini=tables.get("gini"), groups=tb(_groups(tables, min_people)),
        coefficients=tb(_coefficients(tables)),
        one_way=tb(one_way), deciles=tb(deciles, totals=("people", "actual", "expected")),
        spiral=tb(spiral) if spiral is not None else None,
        validation=validation, credibility=tb(cred) if cred is not None else None,
        credibility_hidden=cred_hidden,
        budget=(tb(tables["budget_impact"]) if "budget_impact" in tables else None),
        assumptions=tb(assumptions_table(assumptions_text, a_file, lang), quoted=("source",)),
        assumptions_file=a_file, min_people=min_people, suppressed=n1 + n2 + n3,
        backtest_tables=_backtest_tables(figures, tb, min_people),
        **(_lifetime_tables(figures, tables, tb, min_people) if "lifetime" in figures else {}),
        **(_agreement_tables(figures, tb) if "drug_agreements" in figures else {}))


def _repository_path(path: str) -> str:
    """An assumptions file as the repository names it (``actuarial/...``) when it is
    the shipped one; else its file name."""
    from pathlib import PurePath

    parts = PurePath(path).parts
    if "actuarial" in parts:
        return "/".join(parts[parts.index("actuarial"):])
    return PurePath(path).name
