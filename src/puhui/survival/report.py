"""The survival report (``puhui survival``): one self-contained HTML page with every
fit of :mod:`puhui.survival.analysis` and its diagnostics. No row shows fewer than
``min_people`` people."""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.html_figures import new_figure, png_base64



def _plots(st, min_people: int) -> dict:
    out = {}
    ae = st.tables["ae"]
    if len(ae):
        fig, ax = new_figure(7, 2.8)
        for g, t in ae.groupby("gender", sort=True):
            x = np.arange(len(t)) + (0.15 if g == "2" else -0.15)
            ax.errorbar(x, t["a_to_e"], yerr=[t["a_to_e"] - t["lower"], t["upper"] - t["a_to_e"]],
                        fmt="o", label="men" if g == "1" else "women")
            ax.set_xticks(np.arange(len(t)), t["band"])
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylabel("A/E against CL")
        ax.legend()
        out["ae"] = png_base64(fig)
    if st.curves["mortality"]:
        fig, ax = new_figure(7, 2.8)
        for g, c in st.curves["mortality"].items():
            who = "men" if g == "1" else "women"
            ax.step(c["age"], c["kaplan_meier"], where="post", label=f"{who}: Kaplan-Meier")
            ax.plot(c["age"], c["gompertz"], ls="--", label=f"{who}: Gompertz")
        ax.set_xlabel("age")
        ax.set_ylabel("survival from 60")
        ax.legend()
        out["km"] = png_base64(fig)
    pc = st.tables.get("persistency_curve")
    if isinstance(pc, pd.DataFrame) and len(pc):
        fig, ax = new_figure(5, 2.6)
        ax.step(pc["years"], pc["still_enrolled"], where="post")
        ax.set_xlabel("years enrolled")
        ax.set_ylabel("still enrolled")
        out["persistency"] = png_base64(fig)
    if st.curves["admission"]:
        fig, ax = new_figure(7, 2.8)
        for band, c in st.curves["admission"].items():
            ax.plot(c["years"], 1 - c["not_admitted"], label=band)
        ax.set_xlabel("years from 1 January")
        ax.set_ylabel("admitted at least once")
        ax.legend(fontsize=7, ncol=2)
        out["admission"] = png_base64(fig)
    cal = st.tables.get("admission_calibration")
    if isinstance(cal, pd.DataFrame) and len(cal):
        fig, ax = new_figure(4.5, 3.2)
        ax.plot(cal["predicted"], cal["observed"], "o")
        hi = float(max(cal["predicted"].max(), cal["observed"].max())) * 1.05
        ax.plot([0, hi], [0, hi], color="grey", lw=0.8)
        ax.set_xlabel("predicted one-year risk")
        ax.set_ylabel("observed (Kaplan-Meier)")
        out["calibration"] = png_base64(fig)
    return out


def render(st, min_people: int = 10, lang: str = "en", synthetic: dict | None = None) -> str:
    """The page (template ``survival.html.j2``) in ``lang`` ("en" or "zh");
    ``synthetic``: the data folder's marker (a banner says so)."""
    from puhui import __version__
    from puhui.reporting import render as render_page, table_for

    table = table_for(lang)

    def small(df, col):
        if not isinstance(df, pd.DataFrame) or df.empty or col not in df.columns:
            return df
        return df[df[col] >= min_people]

    def gender_codes(df):
        if isinstance(df, pd.DataFrame) and "covariate" in df.columns:
            return df.assign(covariate=df["covariate"].astype(str))
        return df

    t = st.tables
    names = ("gompertz", "gompertz_mle", "mortality_cox", "cumulative_hazard", "mortality_ph",
             "lapse_cox", "lapse_ph", "admission_cox", "admission_ph")
    shown = {n: table(gender_codes(t.get(n))) for n in names}
    return render_page(
        "survival.html.j2", lang, f=st.figures, version=__version__, min_people=min_people,
        plots=_plots(st, min_people), synthetic=synthetic, **shown,
        ae=table(small(t["ae"], "person_years")),
        gompertz_calibration=table(small(t["gompertz_calibration"], "person_years")),
        lapse_rates=table(small(t.get("lapse_rates"), "at_risk"),
                          kinds={"lower": "pct", "upper": "pct"}),
        lapse_calibration=table(small(t.get("lapse_calibration"), "people")),
        admission_calibration=table(small(t.get("admission_calibration"), "people")))
