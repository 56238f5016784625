"""Bills of the synthetic city: general and chronic outpatient visits, inpatient stays,
special-drug purchases, CAR-T infusions and proton courses, each split by list class,
with line items for stays and drug purchases."""

from __future__ import annotations

import numpy as np
import pandas as pd

from puhui.synth.params import by_band, weighted_codes

LEVELS = np.array([1, 2, 3])


def diagnosis_categories(dx: dict) -> list[str]:
    """Every ICD-10 code the generator can write (fixed categories keep frames small)."""
    codes = set(dx["outpatient_codes"]) | set(dx["inpatient_codes"]) | set(dx["chronic_codes"])
    codes |= set(dx["cancer_sites_male"]) | set(dx["cancer_sites_female"])
    return sorted(codes)


def _cat(values, categories) -> pd.Categorical:
    return pd.Categorical(values, categories=categories)


def _dirichlet_shares(mean: dict, conc: float, n: int, rng) -> np.ndarray:
    """n x 4 class shares (a, b, self, overlimit) around ``mean``."""
    alpha = np.array([mean["a"], mean["b"], mean["self"], mean["overlimit"]]) * conc
    g = rng.gamma(alpha, size=(n, 4))
    return g / g.sum(axis=1, keepdims=True)


def _split_fen(cost_yuan: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Split costs (yuan) into whole-fen class amounts that add up to the rounded cost."""
    total = np.rint(cost_yuan * 100).astype("int64")
    parts = np.floor(total[:, None] * shares[:, :3]).astype("int64")
    last = total - parts.sum(axis=1)
    return np.column_stack([parts, last])


def _days(py: pd.DataFrame, idx: np.ndarray, rng) -> np.ndarray:
    lo = py["start_day"].to_numpy()[idx]
    hi = py["end_day"].to_numpy()[idx]
    return lo + np.floor(rng.random(len(idx)) * (hi - lo + 1)).astype("int64")


def _exposure(py: pd.DataFrame) -> np.ndarray:
    return (py["end_day"] - py["start_day"] + 1).to_numpy() / py["days_in_year"].to_numpy()


def _prefix_match(codes: np.ndarray, prefixes: list[str]) -> np.ndarray:
    codes = np.asarray(codes).astype(str)
    out = np.zeros(len(codes), bool)
    for p in prefixes:
        out |= np.char.startswith(codes, p)
    return out


def make_bills(py: pd.DataFrame, people: pd.DataFrame, P: dict, lists: dict,
               rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bills (one per settlement, amounts in fen by class) and their special lines.

    Returns ``bills`` with: py_row (person-year row), person, year, day, med_type,
    hosp_lv, dise_code, amt_a, amt_b, amt_c, amt_self, amt_overlimit, has_lines; and
    ``special`` lines (bill, hilist_code, list_class, amount) for drugs and treatments.
    """
    U, C, dx = P["utilisation"], P["costs"], P["diagnoses"]
    person = py["person"].to_numpy()
    age = py["age"].to_numpy()
    frailty = people["frailty"].to_numpy()[person]
    chronic = people["chronic"].to_numpy()[person]
    cancer = py["cancer"].to_numpy()
    cancer_code = people["cancer_code"].to_numpy()[person]
    expo = _exposure(py)
    dcats = diagnosis_categories(dx)
    mcats = ["11", "14", "21"]
    parts: list[pd.DataFrame] = []
    special_parts: list[pd.DataFrame] = []

    def emit(rows, med_type, levels, dise, costs, shares, has_lines=False):
        n = len(rows)
        amt = _split_fen(costs, shares)
        df = pd.DataFrame({
            "py_row": rows.astype("int32"), "med_type": _cat(np.full(n, med_type), mcats),
            "hosp_lv": np.asarray(levels, dtype="int8"), "dise_code": _cat(dise, dcats),
            "day": _days(py, rows, rng).astype("int16"),
            "amt_a": amt[:, 0], "amt_b": amt[:, 1], "amt_self": amt[:, 2],
            "amt_overlimit": amt[:, 3], "amt_c": np.zeros(n, "int64"),
            "has_lines": np.full(n, has_lines),
        })
        parts.append(df)
        return df

    # general outpatient
    lam = expo * by_band(U["age_bands"], U["outpatient_rate"], age) * np.sqrt(frailty) \
        * np.where(chronic, 1.5, 1.0)
    cnt = rng.poisson(lam)
    rows = np.repeat(np.arange(len(py)), cnt)
    oc, ow = weighted_codes(dx["outpatient_codes"])
    spec = C["outpatient"]
    cost = spec["median"] * np.exp(spec["age_slope"] * (age[rows] - 40)
                                   + spec["sigma"] * rng.standard_normal(len(rows)))
    emit(rows, "11", rng.choice(LEVELS, size=len(rows), p=C["outpatient_levels"]),
         rng.choice(oc, size=len(rows), p=ow), cost,
         _dirichlet_shares(C["outpatient_shares"], C["share_concentration"], len(rows), rng))

    # chronic / special-disease outpatient (med_type 14)
    chronic_code = people["chronic_code"].to_numpy()[person]
    lam = expo * (np.where(chronic, U["chronic_visits"], 0.0)
                  + np.where(cancer, U["cancer_visits"], 0.0))
    cnt = rng.poisson(lam)
    rows = np.repeat(np.arange(len(py)), cnt)
    is_cancer_visit = cancer[rows] & (~chronic[rows] | (rng.random(len(rows)) < 0.5))
    dise = np.where(is_cancer_visit, cancer_code[rows], chronic_code[rows])
    spec = C["chronic_outpatient"]
    cost = spec["median"] * np.exp(spec["sigma"] * rng.standard_normal(len(rows))) \
        * np.where(is_cancer_visit, 2.0, 1.0)
    emit(rows, "14", rng.choice(LEVELS, size=len(rows), p=C["outpatient_levels"]), dise,
         cost, _dirichlet_shares(C["outpatient_shares"], C["share_concentration"], len(rows), rng))

    # inpatient stays
    lam = expo * by_band(U["age_bands"], U["inpatient_rate"], age) * frailty \
        * np.where(chronic, U["inpatient_chronic_factor"], 1.0) \
        * np.where(cancer, U["inpatient_cancer_factor"], 1.0) \
        * np.where(py["dies"].to_numpy(), U["inpatient_death_year_factor"], 1.0)
    cnt = rng.poisson(lam)
    rows = np.repeat(np.arange(len(py)), cnt)
    m = len(rows)
    for_cancer = cancer[rows] & (rng.random(m) < 0.7)
    ic, iw = weighted_codes(dx["inpatient_codes"])
    dise = np.where(for_cancer, cancer_code[rows], rng.choice(ic, size=m, p=iw))
    s1, s2, s3 = C["inpatient"], C["inpatient_cancer"], C["inpatient_major"]
    z = rng.standard_normal(m)
    cost = np.where(for_cancer, s2["median"] * np.exp(s2["sigma"] * z),
                    s1["median"] * np.exp(s1["age_slope"] * (age[rows] - 40) + s1["sigma"] * z))
    major = rng.random(m) < s3["share"]
    cost = np.where(major, s3["median"] * np.exp(s3["sigma"] * rng.standard_normal(m)), cost)
    shares = np.where(for_cancer[:, None],
                      _dirichlet_shares(C["inpatient_cancer_shares"], C["share_concentration"], m, rng),
                      _dirichlet_shares(C["inpatient_shares"], C["share_concentration"], m, rng))
    emit(rows, "21", rng.choice(LEVELS, size=m, p=C["inpatient_levels"]), dise, cost, shares,
         has_lines=True)

    # special drugs, CAR-T and proton: for cancer patients with a listed indication
    sd = lists["special-drugs-hhb-style"].items
    class_c = lists["class-c-2025"]
    drugs = sd[~sd["overseas"].astype(bool) & ~sd["is_cart"].astype(bool)]
    carts = sd[sd["is_cart"].astype(bool)]
    has_cancer_rows = np.flatnonzero(cancer)
    codes_here = cancer_code[has_cancer_rows].astype(str)
    year = py["year"].to_numpy()

    # a course of monthly purchases of one matching drug
    start = has_cancer_rows[rng.random(len(has_cancer_rows)) < U["special_drug_course_prob"]]
    dise_lists = [str(x).split(";") for x in drugs["dise_codes"]]
    cand = np.stack([_prefix_match(cancer_code[start], dl) for dl in dise_lists], axis=1) \
        if len(start) else np.zeros((0, len(drugs)), bool)
    ok = cand.any(axis=1)
    start, cand = start[ok], cand[ok]
    # pick one matching drug at random among the candidates
    pick = np.argmax(cand * rng.random(cand.shape), axis=1)
    months = 1 + rng.binomial(11, 0.5, size=len(start))
    first = _days(py, start, rng)
    k = np.repeat(np.arange(len(start)), months)
    step = np.arange(len(k)) - np.repeat(np.cumsum(months) - months, months)
    day = first[k] + 30 * step
    keep = day <= py["end_day"].to_numpy()[start[k]]
    k, day = k[keep], day[keep]
    rows = start[k]
    drug = drugs.iloc[pick[k]]
    price = drug["price_yuan"].to_numpy() / 12 * rng.uniform(0.9, 1.1, size=len(rows))
    amount = np.rint(price * 100).astype("int64")
    df = pd.DataFrame({"py_row": rows.astype("int32"),
                       "med_type": _cat(np.full(len(rows), "14"), mcats),
                       "hosp_lv": np.full(len(rows), 3, dtype="int8"),
                       "dise_code": _cat(cancer_code[rows], dcats), "day": day.astype("int16"),
                       "amt_a": 0, "amt_b": 0, "amt_self": amount, "amt_overlimit": 0,
                       "amt_c": 0, "has_lines": True})
    parts.append(df)
    special_parts.append(pd.DataFrame({"part": len(parts) - 1, "pos": np.arange(len(df)),
                                       "hilist_code": drug["hilist_code"].to_numpy(),
                                       "amount": amount}))

    # CAR-T infusions and proton courses: a stay with a large special line
    for kind, items, prob in (("cart", carts, U["cart_prob"]),
                              ("proton", lists["treatments"].items, U["proton_prob"])):
        if kind == "cart":
            prefixes = sorted({p for x in items["dise_codes"] for p in str(x).split(";")})
            elig = has_cancer_rows[_prefix_match(codes_here, prefixes)]
        else:
            elig = has_cancer_rows
        rows = elig[rng.random(len(elig)) < prob]
        m = len(rows)
        item = items.iloc[rng.integers(0, len(items), size=m)]
        base_cost = C["inpatient_cancer"]["median"] * np.exp(
            C["inpatient_cancer"]["sigma"] * rng.standard_normal(m))
        shares = _dirichlet_shares(C["inpatient_cancer_shares"], C["share_concentration"], m, rng)
        df = emit(rows, "21", np.full(m, 3), cancer_code[rows], base_cost, shares,
                  has_lines=True)
        amount = np.rint(item["price_yuan"].to_numpy() * 100).astype("int64")
        df["amt_self"] = df["amt_self"].to_numpy() + amount
        special_parts.append(pd.DataFrame({"part": len(parts) - 1, "pos": np.arange(m),
                                           "hilist_code": item["hilist_code"].to_numpy(),
                                           "amount": amount}))

    offsets = np.cumsum([0] + [len(p) for p in parts])
    bills = pd.concat(parts, ignore_index=True)
    bills["person"] = person[bills["py_row"].to_numpy()].astype("int32")
    bills["year"] = year[bills["py_row"].to_numpy()].astype("int16")
    special = pd.concat(special_parts, ignore_index=True)
    special["bill"] = offsets[special["part"].to_numpy()] + special["pos"].to_numpy()
    special = special.drop(columns=["part", "pos"])
    # special items are class C once the class-C list is in force on the bill's date
    dates = bill_dates(bills)
    on_c = np.zeros(len(special), bool)
    c_items = class_c.items.set_index("hilist_code")
    in_c = special["hilist_code"].isin(c_items.index).to_numpy()
    if in_c.any():
        d = dates[special["bill"].to_numpy()[in_c]]
        on_c[in_c] = (d >= np.datetime64(class_c.valid_from)) & (d <= np.datetime64(class_c.valid_to))
    special["list_class"] = np.where(on_c, "C", "self")
    moved = special[on_c]
    b_idx = moved["bill"].to_numpy()
    amt_self = bills["amt_self"].to_numpy().copy()
    amt_c = bills["amt_c"].to_numpy().copy()
    np.subtract.at(amt_self, b_idx, moved["amount"].to_numpy())
    np.add.at(amt_c, b_idx, moved["amount"].to_numpy())
    bills["amt_self"], bills["amt_c"] = amt_self, amt_c
    return bills, special


def bill_dates(bills: pd.DataFrame) -> np.ndarray:
    y0 = (bills["year"].to_numpy() - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return y0 + bills["day"].to_numpy().astype("timedelta64[D]")
