"""The second synthetic city: a data generator deliberately unlike ``puhui synth``'s.

Issue 18, point 8: truth checks that do not share the pricing model's structure. The
current city (:mod:`puhui.synth.city`) draws each year's use from a fixed gamma frailty
and age curves; this one is written independently and differs in structure:

- a **persistent frailty**: log Z follows an AR(1) across years (high correlation), and
  the same Z drives general outpatient visits and inpatient stays (a common factor, so
  a person's visits and stays are correlated);
- **chronic conditions** with a Gompertz-type onset by age (raised by frailty) that
  persist and raise visits, stays and the death force;
- **cancer**: onset by age, an active phase of 1-3 years of costly stays, special-drug
  courses (which may continue into the next year), rarely CAR-T or proton therapy,
  then survivorship;
- **deaths** from a Gompertz force raised by frailty, conditions and active cancer;
- stays' costs from a **three-part lognormal mixture** (the heavy tail) with **medical
  inflation** on severity year by year;
- **enrolment** in the Huhuibao line (``huhuibao-<year>``, 129 yuan, calendar-year
  policies) selected on the person's TRUE state, which pricing cannot see: launch-year
  take-up rising with frailty, conditions, cancer and last year's stays
  (anti-selection); renewal where the healthy lapse; a small later entry, again selected.

Only file writing (:mod:`puhui.fund.files`), the schema constants and the basic-tier
settlement (:func:`puhui.tiers.basic.settle`) are shared with the rest of the package.
Parameters: ``actuarial/assumptions/synth-second.toml``, each tagged.

The person-level state (frailty, conditions, cancer, deaths, enrolment) is simulated for
everybody at once, year by year; bills are made and settled per year and per block of
:data:`block_persons` people (settlement is per person and calendar year, so blocks only
bound memory). Each year and block draws from its own stream of
``SeedSequence(seed)``: the same arguments give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from puhui.basis import actuarial_dir, read_toml
from puhui.drug_lists import load_lists
from puhui.errors import JobFailed
from puhui.fund.files import FundData, appending, write_table
from puhui.fund.schema import (PERSONS, POLICIES, SETTLEMENT_LINES, SETTLEMENT_MONEY,
                               SETTLEMENTS)
from puhui.products.model import load_product
from puhui.tiers.basic import load_schemes, settle

PARAMS_FILE = "synth-second.toml"
LEVELS = np.array([1, 2, 3], dtype="int64")
#: Kinds of bill (the order is the frame's ``kind`` code).
KIND_OUTPATIENT, KIND_SPECIAL, KIND_STAY, KIND_CANCER_STAY, KIND_DRUG = range(5)
SETTLEMENT_COLUMNS = ("setl_id", "psn_no", "setl_time", "med_type", "hosp_lv", "insutype",
                      "dise_code", *SETTLEMENT_MONEY, "refund_of")
LINE_COLUMNS = ("setl_id", "line_no", "hilist_code", "list_class", "amount", "preselfpay_amt")


def load_params(path: str | Path | None = None) -> dict:
    return read_toml(Path(path) if path else actuarial_dir() / "assumptions" / PARAMS_FILE)


def _codes(table: dict) -> tuple[np.ndarray, np.ndarray]:
    codes = np.array(list(table), dtype=object)
    w = np.array(list(table.values()), dtype="float64")
    return codes, w / w.sum()


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- people


def make_persons(n: int, start_year: int, P: dict, rng: np.random.Generator) -> dict:
    """Age, sex, scheme as at 1 January of ``start_year``.

    age = 10 * band + U{0..9}, band ~ Categorical(age_band_shares);
    male ~ Bernoulli(male_share); employee ~ Bernoulli(employee_share(age));
    retired = employee and age >= retirement age of the sex;
    low_income ~ Bernoulli(low_income_share).
    """
    pop = P["population"]
    shares = np.asarray(pop["age_band_shares"], dtype="float64")
    band = rng.choice(len(shares), size=n, p=shares / shares.sum())
    age = (band * 10 + rng.integers(0, 10, size=n)).astype("int64")
    male = rng.random(n) < pop["male_share"]
    es = pop["employee_share"]
    p_emp = np.select([age < 18, age <= 22, age <= 59],
                      [es["under18"], es["age18_22"], es["age23_59"]], es["age60_plus"])
    employee = rng.random(n) < p_emp
    ret = pop["retirement_age"]
    retired = employee & (age >= np.where(male, ret["male"], ret["female"]))
    return {"birth_year": start_year - age, "male": male, "employee": employee,
            "retired": retired, "low_income": rng.random(n) < P["low_income_share"]}


def frailty_start(n: int, F: dict, rng) -> np.ndarray:
    """Stationary log frailty x ~ N(0, sigma^2) (Z = exp(x - sigma^2 / 2), E[Z] = 1)."""
    return F["sigma"] * rng.standard_normal(n)


def frailty_step(x: np.ndarray, F: dict, rng) -> np.ndarray:
    """x_t = rho * x_{t-1} + sqrt(1 - rho^2) * sigma * e_t: the same stationary law, and
    corr(x_t, x_{t-1}) = rho."""
    return F["rho"] * x + np.sqrt(1 - F["rho"] ** 2) * F["sigma"] * rng.standard_normal(len(x))


def frailty(x: np.ndarray, F: dict) -> np.ndarray:
    return np.exp(x - F["sigma"] ** 2 / 2)


def _onset_force(spec: dict, age, a="onset_a", b="onset_b") -> np.ndarray:
    """h(x) = exp(a + b * (x - 60))."""
    return np.exp(spec[a] + spec[b] * (np.asarray(age, dtype="float64") - 60))


def conditions_start(age: np.ndarray, z: np.ndarray, P: dict, rng) -> np.ndarray:
    """Chronic conditions present at the start (n x C bool): P = 1 - exp(-H(x) Z^0.5),
    H(x) = exp(a) / b * (exp(b (x - 60)) - exp(-60 b)), the cumulative onset force."""
    conds = P["conditions"]
    out = np.zeros((len(age), len(conds)), bool)
    zp = np.sqrt(z)
    for c, spec in enumerate(conds):
        H = np.exp(spec["onset_a"]) / spec["onset_b"] * (
            np.exp(spec["onset_b"] * (age - 60.0)) - np.exp(-60.0 * spec["onset_b"]))
        out[:, c] = rng.random(len(age)) < 1 - np.exp(-H * zp)
    return out


def conditions_onset(has: np.ndarray, age: np.ndarray, z: np.ndarray, P: dict, rng) -> None:
    """New conditions this year, in place: P(onset) = 1 - exp(-h(x) Z^0.5)."""
    zp = np.sqrt(z)
    for c, spec in enumerate(P["conditions"]):
        p = 1 - np.exp(-_onset_force(spec, age) * zp)
        has[:, c] |= rng.random(len(age)) < p


def cancer_onset(free: np.ndarray, age: np.ndarray, z: np.ndarray, C: dict, rng) -> np.ndarray:
    """Who gets cancer this year: P = 1 - exp(-exp(a + b (x - 60)) Z^frailty_power)."""
    p = 1 - np.exp(-_onset_force(C, age, "a", "b") * z ** C["frailty_power"])
    return free & (rng.random(len(age)) < p)


def cancer_sites(male: np.ndarray, C: dict, site_codes: list[str], rng) -> np.ndarray:
    """Site index (into ``site_codes``) by sex."""
    out = np.empty(len(male), "int64")
    for sex, key in ((True, "sites_male"), (False, "sites_female")):
        codes, w = _codes(C[key])
        idx = np.array([site_codes.index(c) for c in codes])
        on = male == sex
        out[on] = idx[rng.choice(len(codes), size=int(on.sum()), p=w)]
    return out


def death_force(age, male, z, conds, cancer_state, P: dict) -> np.ndarray:
    """mu = exp(a + b (x - 60)) * female^[woman] * Z^frailty_power * prod(condition
    mortality) * (cancer_active | cancer_survivor | 1)."""
    M = P["mortality"]
    mu = np.exp(M["a"] + M["b"] * (age - 60.0)) * np.where(male, 1.0, M["female"])
    mu *= z ** M["frailty_power"]
    mu *= _condition_product(conds, P, "mortality")
    mu *= np.select([cancer_state == 1, cancer_state == 2],
                    [M["cancer_active"], M["cancer_survivor"]], 1.0)
    return mu


def _condition_product(conds: np.ndarray, P: dict, key: str) -> np.ndarray:
    f = np.array([c[key] for c in P["conditions"]], dtype="float64")
    return np.exp(conds.astype("float64") @ np.log(f))


# ----------------------------------------------------------------------- the state


@dataclass
class State:
    """Everybody's true state as at 1 January of ``year`` (arrays over all persons)."""

    year: int
    x: np.ndarray               # log frailty
    conds: np.ndarray           # n x C bool
    cancer_onset: np.ndarray    # year of onset, 0 for none
    cancer_until: np.ndarray    # last year of the active phase
    site: np.ndarray            # cancer site index
    on_drug: np.ndarray         # special-drug course last year (index into drugs, -1 none)
    alive: np.ndarray

    def cancer_state(self) -> np.ndarray:
        """0 none, 1 active this year, 2 survivor."""
        has = (self.cancer_onset > 0) & (self.cancer_onset <= self.year)
        return np.where(has, np.where(self.year <= self.cancer_until, 1, 2), 0)


def _phase(n: int, C: dict, rng) -> np.ndarray:
    w = np.asarray(C["phase_years"], dtype="float64")
    return 1 + rng.choice(len(w), size=n, p=w / w.sum())


def initial_state(people: dict, year: int, P: dict, sites: list[str], rng) -> State:
    """The state at 1 January of ``year``: frailty, conditions (prevalence formula),
    cancers begun in the three years before (each year by the onset force)."""
    n = len(people["birth_year"])
    age = np.maximum(year - people["birth_year"], 0)
    x = frailty_start(n, P["frailty"], rng)
    z = frailty(x, P["frailty"])
    conds = conditions_start(age, z, P, rng)
    C = P["cancer"]
    onset = np.zeros(n, "int64")
    for y in (year - 2, year - 1, year):
        new = cancer_onset(onset == 0, np.maximum(age - (year - y), 0), z, C, rng)
        onset[new] = y
    has = onset > 0
    until = np.where(has, onset + _phase(n, C, rng) - 1, 0)
    site = cancer_sites(people["male"], C, sites, rng)
    return State(year, x, conds, onset, until, site, np.full(n, -1, "int64"),
                 np.ones(n, bool))


def deaths(st: State, people: dict, P: dict, rng) -> np.ndarray:
    """Who dies this year: q = 1 - exp(-mu) (:func:`death_force`), and everyone who has
    reached ``max_age``."""
    age = np.maximum(st.year - people["birth_year"], 0)
    z = frailty(st.x, P["frailty"])
    mu = death_force(age, people["male"], z, st.conds, st.cancer_state(), P)
    return st.alive & ((rng.random(len(age)) < 1 - np.exp(-mu))
                       | (age >= P["mortality"]["max_age"]))


def burn_in(n: int, start_year: int, P: dict, sites: list[str], rng
            ) -> tuple[dict, State, np.ndarray]:
    """The people alive at 1 January of ``start_year`` and their state.

    The prevalence formulas ignore that the sick die first, so the state is started
    ``burn_in_years`` before and run on (frailty, onsets, deaths; no bills) from
    ``ceil(oversample * n)`` candidates aged by ``age_band_shares`` at the start; the
    first ``n`` survivors (in candidate order) are the city. Also returns each one's
    stays in the year before the start (the same process), which launch selection reads.
    """
    B = int(P["burn_in_years"])
    m = int(np.ceil(P["oversample"] * n)) + 20
    people = make_persons(m, start_year, P, rng)
    st = initial_state(people, start_year - B - 1, P, sites, rng)
    for _ in range(B):
        st.alive &= ~deaths(st, people, P, rng)
        advance(st, people, P, rng)
    keep = np.flatnonzero(st.alive)
    if len(keep) < n:
        raise JobFailed(f"synth-second: only {len(keep):,} of {m:,} candidates survive the "
                        f"burn-in, fewer than the {n:,} people asked for; raise 'oversample' "
                        f"in actuarial/assumptions/{PARAMS_FILE}")
    keep = keep[:n]
    people = {k: v[keep] for k, v in people.items()}
    st = State(st.year, st.x[keep], st.conds[keep], st.cancer_onset[keep],
               st.cancer_until[keep], st.site[keep], st.on_drug[keep], st.alive[keep])
    z = frailty(st.x, P["frailty"])
    lam = inpatient_rate(st.year - people["birth_year"], z, st.conds, st.cancer_state(), P)
    return people, st, rng.poisson(lam)


def advance(st: State, people: dict, P: dict, rng) -> None:
    """One year on, in place: frailty step, new conditions, new cancers."""
    st.year += 1
    age = np.maximum(st.year - people["birth_year"], 0)
    st.x = frailty_step(st.x, P["frailty"], rng)
    z = frailty(st.x, P["frailty"])
    conditions_onset(st.conds, age, z, P, rng)
    new = cancer_onset(st.alive & (st.cancer_onset == 0), age, z, P["cancer"], rng)
    st.cancer_onset[new] = st.year
    st.cancer_until[new] = st.year + _phase(int(new.sum()), P["cancer"], rng) - 1


def inpatient_rate(age, z, conds, cancer_state, P: dict) -> np.ndarray:
    """lambda_ip = base_ip(age) * Z^inpatient_power * prod(condition inpatient factors)
    * (inpatient_active | inpatient_survivor | 1), per person-year."""
    U, C = P["utilisation"], P["cancer"]
    lam = np.interp(age, U["age_knots"], U["inpatient"]) * z ** U["inpatient_power"]
    lam *= _condition_product(conds, P, "inpatient")
    lam *= np.select([cancer_state == 1, cancer_state == 2],
                     [C["inpatient_active"], C["inpatient_survivor"]], 1.0)
    return lam


# ------------------------------------------------------------------------ enrolment


def enrol_logit(coef: dict, age, z, n_conds, cancer_known, stay_last, employee,
                cost_last=None) -> np.ndarray:
    """logit p = intercept + age (x - 45) / 10 + frailty log Z + conditions min(n, 3)
    + cancer [known] + stay [a stay last year] + employee [310]
    (+ cost log10(1 + last year's cost in yuan), at renewal)."""
    x = (coef["intercept"] + coef["age"] * (age - 45) / 10 + coef["frailty"] * np.log(z)
         + coef["conditions"] * np.minimum(n_conds, 3) + coef["cancer"] * cancer_known
         + coef["stay"] * stay_last + coef["employee"] * employee)
    if cost_last is not None:
        x = x + coef.get("cost", 0.0) * np.log10(1 + cost_last)
    return x


def enrol(st: State, people: dict, enrolled_last: np.ndarray, stays_last: np.ndarray,
          cost_last: np.ndarray, first: bool, P: dict, rng) -> np.ndarray:
    """Who holds a policy this year (bool over all persons; only the living).

    Launch year: p = logistic(launch logit). Later years: enrolled last year ->
    p = logistic(renewal logit, with last year's cost), others -> logistic(entry logit).
    Every term is the person's true state at 1 January, which pricing cannot see."""
    E = P["enrolment"]
    age = st.year - people["birth_year"]
    z = frailty(st.x, P["frailty"])
    n_conds = st.conds.sum(axis=1)
    known = (st.cancer_onset > 0) & (st.cancer_onset < st.year)
    args = (age, z, n_conds, known, stays_last > 0, people["employee"])
    if first:
        x = enrol_logit(E["launch"], *args)
    else:
        x = np.where(enrolled_last, enrol_logit(E["renewal"], *args, cost_last=cost_last),
                     enrol_logit(E["entry"], *args))
    return st.alive & (rng.random(len(age)) < _logistic(x))


def preexisting(st: State, sites: list[str], P: dict, prefixes: tuple[str, ...]) -> np.ndarray:
    """The product's definition (``[preexisting]``: a listed ICD-10 prefix diagnosed in the
    look-back years before the policy's start), on the true state: a listed chronic
    condition (they persist and are treated every year), or a cancer on a listed site
    diagnosed before the year (active patients are treated, survivors have follow-up
    visits every year, so the diagnosis is always within the look-back)."""
    def listed(code: str) -> bool:
        return code.startswith(prefixes)
    on = np.array([listed(c["code"]) for c in P["conditions"]], bool)
    out = st.conds[:, on].any(axis=1) if on.any() else np.zeros(len(st.x), bool)
    site_listed = np.array([listed(s) for s in sites], bool)
    known = (st.cancer_onset > 0) & (st.cancer_onset < st.year)
    return out | (known & site_listed[st.site])


# ---------------------------------------------------------------------------- bills


def split_classes(total_fen: np.ndarray, out_mean: np.ndarray, K: dict, rng) -> dict:
    """Split totals into class amounts (fen, adding up exactly):
    out-of-list share s ~ Beta(m k, (1 - m) k); overlimit = overlimit_part of it;
    in-list class B share ~ Beta(b k, (1 - b) k); class A the rest."""
    k = K["concentration"]
    n = len(total_fen)
    s = rng.beta(out_mean * k, (1 - out_mean) * k, size=n)
    b = rng.beta(K["b_mean"] * k, (1 - K["b_mean"]) * k, size=n)
    out = np.floor(total_fen * s).astype("int64")
    over = np.floor(out * K["overlimit_part"]).astype("int64")
    inlist = total_fen - out
    amt_b = np.floor(inlist * b).astype("int64")
    return {"amt_a": inlist - amt_b, "amt_b": amt_b, "amt_c": np.zeros(n, "int64"),
            "amt_self": out - over, "amt_overlimit": over}


def _lognormal(median, sigma, n, rng):
    return median * np.exp(sigma * rng.standard_normal(n))


def _pick_levels(probs, n, rng) -> np.ndarray:
    return LEVELS[rng.choice(3, size=n, p=np.asarray(probs) / np.sum(probs))]


@dataclass
class Lists:
    """The special items the generator buys, from actuarial/drugs."""

    drugs: pd.DataFrame          # special-drugs-hhb-style, not CAR-T, not overseas
    drug_match: np.ndarray       # site x drug: the drug's indication covers the site
    carts: pd.DataFrame
    cart_sites: np.ndarray       # site: some CAR-T is indicated
    proton: pd.DataFrame
    class_c: set[str]
    class_c_from: np.datetime64
    class_c_to: np.datetime64


def load_special(sites: list[str]) -> Lists:
    lists = load_lists()
    sd = lists["special-drugs-hhb-style"].items
    cart = sd["is_cart"].astype(bool).to_numpy()
    overseas = sd["overseas"].astype(bool).to_numpy()
    drugs = sd[~cart & ~overseas].reset_index(drop=True)
    carts = sd[cart].reset_index(drop=True)

    def match(table):
        return np.array([[s.startswith(tuple(str(d).split(";"))) for d in table["dise_codes"]]
                         for s in sites], bool).reshape(len(sites), len(table))
    cc = lists["class-c-2025"]
    return Lists(drugs, match(drugs), carts, match(carts).any(axis=1),
                 lists["treatments"].items.reset_index(drop=True),
                 set(cc.items["hilist_code"].astype(str)),
                 np.datetime64(cc.valid_from, "D"), np.datetime64(cc.valid_to, "D"))


def _valid_on(items: pd.DataFrame, idx: np.ndarray, day: np.ndarray) -> np.ndarray:
    f = pd.to_datetime(items["valid_from"]).to_numpy().astype("datetime64[D]")[idx]
    t = pd.to_datetime(items["valid_to"]).to_numpy().astype("datetime64[D]")[idx]
    return (day >= f) & (day <= t)


def year_bills(py: dict, P: dict, L: Lists, sites: list[str], year: int, start_year: int,
               rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bills of one block of person-years, and their special items.

    ``py``: arrays over the block's living persons (person, age, z, conds, cancer_state,
    site, end_day, days, dies, on_drug). Counts, with e = exposure (days alive / days):
    general visits ~ Poisson(e base_op(x) Z^outpatient_power);
    special visits ~ Poisson(e (sum of conditions' visits + cancer visits));
    stays ~ Poisson(e lambda_ip (death_year_inpatient if dying)).
    Severity x (1 + inflation)^(year - start) x exp(age_slope (x - 50)); stays from the
    mixture, active-cancer stays mostly from the cancer lognormal. Special-drug courses:
    monthly purchases of a matching drug, price / 12 x U(0.9, 1.1), from the start month
    (January when continuing last year's course) to the year's end or death.
    Returns ``bills`` (one row per settlement: row = index into ``py``, day, kind,
    med_type, hosp_lv, dise_code, amounts) and ``special`` (bill, hilist_code, amount).
    """
    U, K, C = P["utilisation"], P["costs"], P["cancer"]
    n = len(py["person"])
    age = py["age"]
    z = py["z"]
    cs = py["cancer_state"]
    expo = (py["end_day"] + 1) / py["days"]
    infl = (1 + K["inflation"]) ** (year - start_year)
    parts = []

    def days_for(rows):
        return np.floor(rng.random(len(rows)) * (py["end_day"][rows] + 1)).astype("int64")

    def add(rows, kind, med_type, lv, dise, cost_yuan, out_mean, day=None):
        total = np.rint(cost_yuan * 100).astype("int64")
        amt = split_classes(total, np.full(len(rows), out_mean) if np.isscalar(out_mean)
                            else out_mean, K, rng)
        parts.append(pd.DataFrame({
            "row": rows, "day": days_for(rows) if day is None else day,
            "kind": np.broadcast_to(np.asarray(kind, "int8"), (len(rows),)),
            "med_type": med_type,
            "hosp_lv": lv, "dise_code": dise, **amt}))

    sev_age = np.exp(K["age_slope"] * (age - 50.0))
    # general outpatient
    lam = expo * np.interp(age, U["age_knots"], U["outpatient"]) * z ** U["outpatient_power"]
    rows = np.repeat(np.arange(n), rng.poisson(lam))
    codes, w = _codes(K["outpatient_codes"])
    spec = K["outpatient"]
    add(rows, KIND_OUTPATIENT, "11", _pick_levels(K["outpatient_levels"], len(rows), rng),
        codes[rng.choice(len(codes), size=len(rows), p=w)],
        _lognormal(spec["median"], spec["sigma"], len(rows), rng) * infl * sev_age[rows],
        K["out_of_list_mean"]["outpatient"])
    # special-disease outpatient: a visit's diagnosis is one of the person's conditions
    # (or the cancer) in proportion to their visit rates
    cond_codes = np.array([c["code"] for c in P["conditions"]] + ["CANCER"], dtype=object)
    vis = np.column_stack([py["conds"] * np.array([c["visits"] for c in P["conditions"]]),
                           np.select([cs == 1, cs == 2],
                                     [C["active_visits"], C["survivor_visits"]], 0.0)])
    tot = vis.sum(axis=1)
    rows = np.repeat(np.arange(n), rng.poisson(expo * tot))
    cum = np.cumsum(vis[rows], axis=1)
    which = (cum < (rng.random(len(rows)) * tot[rows])[:, None]).sum(axis=1)
    which = np.minimum(which, vis.shape[1] - 1)
    dise = cond_codes[which]
    is_c = which == vis.shape[1] - 1
    dise[is_c] = np.array(sites, dtype=object)[py["site"][rows[is_c]]]
    spec = K["special_outpatient"]
    add(rows, KIND_SPECIAL, "14", _pick_levels(K["outpatient_levels"], len(rows), rng), dise,
        _lognormal(spec["median"], spec["sigma"], len(rows), rng) * infl * sev_age[rows]
        * np.where(is_c, 2.0, 1.0), K["out_of_list_mean"]["special_outpatient"])
    # inpatient stays
    lam = expo * inpatient_rate(age, z, py["conds"], cs, P) \
        * np.where(py["dies"], U["death_year_inpatient"], 1.0)
    rows = np.repeat(np.arange(n), rng.poisson(lam))
    m = len(rows)
    for_cancer = (cs[rows] == 1) & (rng.random(m) < C["cancer_stay_share"])
    comp = rng.choice(3, size=m, p=np.asarray(K["stay_weights"]) / np.sum(K["stay_weights"]))
    cost = np.asarray(K["stay_medians"], dtype="float64")[comp] * np.exp(
        np.asarray(K["stay_sigmas"])[comp] * rng.standard_normal(m))
    cs_spec = K["cancer_stay"]
    cost = np.where(for_cancer, _lognormal(cs_spec["median"], cs_spec["sigma"], m, rng), cost)
    lv_probs = np.asarray(K["stay_levels"], dtype="float64")
    u = rng.random(m)
    lvc = np.where(for_cancer, 2, comp)
    lv = LEVELS[(u[:, None] > np.cumsum(lv_probs, axis=1)[lvc][:, :2]).sum(axis=1)]
    codes, w = _codes(K["stay_codes"])
    dise = codes[rng.choice(len(codes), size=m, p=w)]
    has_cond = py["conds"][rows].any(axis=1)
    for_cond = ~for_cancer & has_cond & (rng.random(m) < K["condition_stay_share"])
    if for_cond.any():   # one of the person's conditions, at random
        cw = py["conds"][rows[for_cond]] * rng.random((int(for_cond.sum()), len(cond_codes) - 1))
        dise[for_cond] = cond_codes[np.argmax(cw, axis=1)]
    dise[for_cancer] = np.array(sites, dtype=object)[py["site"][rows[for_cancer]]]
    om = K["out_of_list_mean"]
    add(rows, np.where(for_cancer, KIND_CANCER_STAY, KIND_STAY).astype("int8"), "21", lv, dise,
        cost * infl * sev_age[rows], np.where(for_cancer, om["cancer_stay"], om["stay"]))
    stays = pd.concat(parts, ignore_index=True)
    special_bills, special_items = _special(py, P, L, sites, year, cs, infl, rng)
    bills = pd.concat([stays, special_bills], ignore_index=True)
    special_items["bill"] += len(stays)
    return bills, special_items


def _special(py, P, L: Lists, sites, year, cs, infl, rng):
    """Special-drug purchases (one settlement a month, one line) and CAR-T / proton stays
    (a cancer stay with a large special line). Updates ``py['on_drug']`` to this
    year's course (-1 none), read next year for continuation."""
    C, K = P["cancer"], P["costs"]
    active = np.flatnonzero(cs == 1)
    y0 = np.datetime64(f"{year}-01-01", "D")
    # courses: continue last year's (from January) or start one (from a random month)
    cont = active[(py["on_drug"][active] >= 0)
                  & (rng.random(len(active)) < C["drug_course_continue"])]
    cand = np.setdiff1d(active, cont)
    has_match = L.drug_match[py["site"][cand]].any(axis=1)
    start = cand[has_match & (rng.random(len(cand)) < C["drug_course_start"])]
    pick = np.argmax(L.drug_match[py["site"][start]] * rng.random((len(start), len(L.drugs))),
                     axis=1)
    who = np.concatenate([cont, start])
    drug = np.concatenate([py["on_drug"][cont], pick]).astype("int64")
    first_day = np.concatenate([np.zeros(len(cont), "int64"),
                                30 * rng.integers(0, 12, size=len(start))])
    months = np.maximum(0, (py["end_day"][who] - first_day) // 30 + 1)
    k = np.repeat(np.arange(len(who)), months)
    step = np.arange(len(k)) - np.repeat(np.cumsum(months) - months, months)
    day = first_day[k] + 30 * step
    rows, drug_k = who[k], drug[k]
    ok = _valid_on(L.drugs, drug_k, y0 + day) & (day <= py["end_day"][rows])
    rows, drug_k, day = rows[ok], drug_k[ok], day[ok]
    py["on_drug"][:] = -1
    py["on_drug"][who] = drug
    price = L.drugs["price_yuan"].to_numpy(dtype="float64")[drug_k] / 12 \
        * rng.uniform(0.9, 1.1, size=len(rows))
    amount = np.rint(price * 100).astype("int64")
    m = len(rows)
    zero = np.zeros(m, "int64")
    bills = [pd.DataFrame({"row": rows, "day": day, "kind": np.full(m, KIND_DRUG, "int8"),
                           "med_type": "14", "hosp_lv": np.full(m, 3, "int64"),
                           "dise_code": np.array(sites, dtype=object)[py["site"][rows]],
                           "amt_a": zero, "amt_b": zero, "amt_c": zero, "amt_self": amount,
                           "amt_overlimit": zero})]
    items = [pd.DataFrame({"bill": np.arange(m), "hilist_code": L.drugs["hilist_code"]
                           .astype(str).to_numpy()[drug_k], "amount": amount})]
    offset = m
    # CAR-T and proton: a cancer stay whose bill carries the item (self-pay, or class C)
    cart_ok = active[L.cart_sites[py["site"][active]]]
    for table, elig, prob, match in (
            (L.carts, cart_ok, C["cart"], True), (L.proton, active, C["proton"], False)):
        rows = elig[rng.random(len(elig)) < prob]
        m = len(rows)
        if match and m:
            ok_item = np.array([[py_site_s.startswith(tuple(str(d).split(";")))
                                 for d in table["dise_codes"]]
                                for py_site_s in np.array(sites)[py["site"][rows]]], bool)
            item = np.argmax(ok_item * rng.random(ok_item.shape), axis=1)
        else:
            item = rng.integers(0, len(table), size=m)
        day = np.floor(rng.random(m) * (py["end_day"][rows] + 1)).astype("int64")
        valid = _valid_on(table, item, y0 + day)
        rows, item, day = rows[valid], item[valid], day[valid]
        m = len(rows)
        spec = K["cancer_stay"]
        base = np.rint(_lognormal(spec["median"], spec["sigma"], m, rng) * infl * 100
                       ).astype("int64")
        amt = split_classes(base, np.full(m, K["out_of_list_mean"]["cancer_stay"]), K, rng)
        price = np.rint(table["price_yuan"].to_numpy(dtype="float64")[item] * 100).astype("int64")
        amt["amt_self"] = amt["amt_self"] + price
        bills.append(pd.DataFrame({"row": rows, "day": day,
                                   "kind": np.full(m, KIND_CANCER_STAY, "int8"),
                                   "med_type": "21", "hosp_lv": np.full(m, 3, "int64"),
                                   "dise_code": np.array(sites, dtype=object)[py["site"][rows]],
                                   **amt}))
        items.append(pd.DataFrame({"bill": offset + np.arange(m), "hilist_code":
                                   table["hilist_code"].astype(str).to_numpy()[item],
                                   "amount": price}))
        offset += m
    return pd.concat(bills, ignore_index=True), pd.concat(items, ignore_index=True)


def _class_c(bills: pd.DataFrame, items: pd.DataFrame, L: Lists, year: int) -> None:
    """Special items on the class-C list are class C while it is in force (their amount
    moves from amt_self to amt_c), self-pay otherwise; sets ``items['list_class']``."""
    day = np.datetime64(f"{year}-01-01", "D") + bills["day"].to_numpy()[items["bill"].to_numpy()]
    on = items["hilist_code"].isin(L.class_c).to_numpy() & (day >= L.class_c_from) \
        & (day <= L.class_c_to)
    items["list_class"] = np.where(on, "C", "self")
    if on.any():
        b = items["bill"].to_numpy()[on]
        a = items["amount"].to_numpy()[on]
        amt_self = bills["amt_self"].to_numpy().copy()
        amt_c = bills["amt_c"].to_numpy().copy()
        np.subtract.at(amt_self, b, a)
        np.add.at(amt_c, b, a)
        bills["amt_self"], bills["amt_c"] = amt_self, amt_c


def _lines(bills: pd.DataFrame, money: pd.DataFrame, items: pd.DataFrame,
           class_ab: pd.DataFrame, rng) -> pd.DataFrame:
    """Lines of the settlements that carry a special item: the item's line, and for stays
    one generic line per class present (A with any amount above a price cap, B with the
    settlement's up-front self-pay, self-pay), so the lines add up to the settlement's
    medfee_sumamt and preselfpay_amt."""
    b = items["bill"].to_numpy()
    stay = bills["med_type"].to_numpy()[b] == "21"
    sb = b[stay]
    codes = {k: class_ab.loc[class_ab["list_class"] == k, "hilist_code"].astype(str).to_numpy()
             for k in ("A", "B", "self")}
    special_self = np.where(items["list_class"].to_numpy() == "self", items["amount"], 0)[stay]
    parts = [pd.DataFrame({"bill": b, "rank": 3, "hilist_code": items["hilist_code"].to_numpy(),
                           "list_class": items["list_class"].to_numpy(),
                           "amount": items["amount"].to_numpy(), "preselfpay_amt": 0})]
    for rank, cls, amount, pre in (
            (0, "A", bills["amt_a"].to_numpy()[sb] + bills["amt_overlimit"].to_numpy()[sb], 0),
            (1, "B", bills["amt_b"].to_numpy()[sb], money["preselfpay_amt"].to_numpy()[sb]),
            (2, "self", bills["amt_self"].to_numpy()[sb] - special_self, 0)):
        parts.append(pd.DataFrame({"bill": sb, "rank": rank,
                                   "hilist_code": rng.choice(codes[cls], size=len(sb)),
                                   "list_class": cls, "amount": amount, "preselfpay_amt": pre}))
    ln = pd.concat(parts, ignore_index=True)
    ln = ln[ln["amount"].to_numpy() != 0]
    return ln.sort_values(["bill", "rank"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------ the city


@dataclass
class YearStats:
    """Per person, the year just simulated (read by next year's enrolment)."""

    stays: np.ndarray
    cost: np.ndarray     # total medfee_sumamt, yuan


def generate(persons: int, years: int, seed: int, start_year: int | None = None,
             params: dict | None = None, progress: Callable[[str], None] | None = None
             ) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield the city's tables in pieces, in engine types (money in fen):
    ("settlements", chunk) and ("lines", chunk) for each year and block, then
    ("policies", all) and ("persons", all). Settlement ids are numbered in the order
    the chunks come (S + 10 digits)."""
    say = progress or (lambda msg: None)
    P = params or load_params()
    start_year = int(start_year or P["start_year"])
    root = np.random.SeedSequence(seed)
    ss_people, ss_state, ss_enrol, ss_years = root.spawn(4)
    rng_state = np.random.default_rng(ss_state)
    rng_enrol = np.random.default_rng(ss_enrol)
    year_seeds = ss_years.spawn(years)
    schemes = load_schemes()
    C = P["cancer"]
    sites = sorted(set(C["sites_male"]) | set(C["sites_female"]))
    L = load_special(sites)
    class_ab = load_lists()["class-ab-sample"].items
    product = load_product(actuarial_dir() / "products" / P["preexisting_product"])
    prefixes = tuple(product.preexisting_codes)

    say("people")
    people, st, stays_before = burn_in(persons, start_year, P, sites,
                                      np.random.default_rng(ss_people))
    n = persons
    psn_no = np.array([f"P{i + 1:08d}" for i in range(n)], dtype=object)
    stats = YearStats(stays_before, np.zeros(n))
    death = np.full(n, np.datetime64("NaT"), "datetime64[D]")
    enrolled = np.zeros(n, bool)
    policies = []
    next_id = 0
    block = int(P["block_persons"])
    for k in range(years):
        advance(st, people, P, rng_state)
        year = st.year
        age = year - people["birth_year"]
        z = frailty(st.x, P["frailty"])
        cs = st.cancer_state()
        dies = deaths(st, people, P, rng_state)
        y0 = np.datetime64(f"{year}-01-01", "D")
        days = int((np.datetime64(f"{year + 1}-01-01", "D") - y0).astype("int64"))
        dday = rng_state.integers(0, days, size=n)
        death[dies] = y0 + dday[dies]
        # enrolment on the state at 1 January
        say(f"{year}: enrolment")
        now = enrol(st, people, enrolled, stats.stays, stats.cost, k == 0, P, rng_enrol)
        pre = preexisting(st, sites, P, prefixes)
        sel = np.flatnonzero(now)
        policies.append(pd.DataFrame({"person": sel, "year": year, "preexisting": pre[sel]}))
        enrolled = now
        # bills by block
        alive_idx = np.flatnonzero(st.alive)
        new_stats = YearStats(np.zeros(n, "int64"), np.zeros(n))
        block_seeds = year_seeds[k].spawn(max(1, -(-n // block)))
        for b, lo in enumerate(range(0, n, block)):
            say(f"{year}: bills, block {b + 1}")
            idx = alive_idx[(alive_idx >= lo) & (alive_idx < lo + block)]
            rng = np.random.default_rng(block_seeds[b])
            py = {"person": idx, "age": age[idx], "z": z[idx], "conds": st.conds[idx],
                  "cancer_state": cs[idx], "site": st.site[idx],
                  "end_day": np.where(dies[idx], dday[idx], days - 1), "days": days,
                  "dies": dies[idx], "on_drug": st.on_drug[idx].copy()}
            bills, items = year_bills(py, P, L, sites, year, start_year, rng)
            st.on_drug[idx] = py["on_drug"]
            _class_c(bills, items, L, year)
            bills = _order(bills, py)
            items["bill"] = bills.attrs["new_position"][items["bill"].to_numpy()]
            _add_attributes(bills, py, people, year)
            money = settle(bills, schemes)
            who = bills["person"].to_numpy()
            np.add.at(new_stats.stays, who[bills["med_type"].to_numpy() == "21"], 1)
            np.add.at(new_stats.cost, who, money["medfee_sumamt"].to_numpy() / 100)
            ids = np.array([f"S{next_id + i + 1:010d}" for i in range(len(bills))], dtype=object)
            next_id += len(bills)
            yield "settlements", _settlement_frame(bills, money, ids, psn_no)
            if len(items):
                ln = _lines(bills, money, items, class_ab, rng)
                ln["setl_id"] = ids[ln["bill"].to_numpy()]
                ln["line_no"] = ln.groupby("bill", sort=False).cumcount() + 1
                yield "lines", ln[list(LINE_COLUMNS)].reset_index(drop=True)
            del bills, money, items
        stats = new_stats
        st.alive &= ~dies
    say("policies, persons")
    yield "policies", _policy_frame(policies, psn_no, P, rng_enrol)
    yield "persons", pd.DataFrame({
        "psn_no": psn_no, "birth_year": people["birth_year"].astype("int64"),
        "gender": np.where(people["male"], "1", "2"),
        "insutype": np.where(people["employee"], "310", "390"),
        "retired": people["retired"], "death_date": pd.to_datetime(death).astype("datetime64[ns]"),
        "low_income": people["low_income"]})


def _order(bills: pd.DataFrame, py: dict) -> pd.DataFrame:
    """Bills in person-then-day order (stable), the order the settlements are numbered
    in; ``attrs['new_position']`` maps an old row to its new one."""
    person = py["person"][bills["row"].to_numpy()]
    order = np.lexsort((np.arange(len(bills)), bills["day"].to_numpy(), person))
    new_pos = np.empty(len(bills), "int64")
    new_pos[order] = np.arange(len(bills))
    out = bills.iloc[order].reset_index(drop=True)
    out.attrs["new_position"] = new_pos
    return out


def _add_attributes(bills: pd.DataFrame, py: dict, people: dict, year: int) -> None:
    """What the basic tier reads: person, setl_time and the person's attributes."""
    who = py["person"][bills["row"].to_numpy()]
    bills["person"] = who
    bills["setl_time"] = (np.datetime64(f"{year}-01-01", "D")
                          + bills["day"].to_numpy()).astype("datetime64[ns]")
    bills["age"] = (year - people["birth_year"][who]).astype("int64")
    bills["gender"] = np.where(people["male"][who], "1", "2").astype(object)
    bills["insutype"] = np.where(people["employee"][who], "310", "390").astype(object)
    bills["retired"] = people["retired"][who]
    bills["low_income"] = people["low_income"][who]


def _settlement_frame(bills, money, ids, psn_no) -> pd.DataFrame:
    out = pd.DataFrame({
        "setl_id": ids, "psn_no": psn_no[bills["person"].to_numpy()],
        "setl_time": bills["setl_time"].to_numpy(), "med_type": bills["med_type"].to_numpy(),
        "hosp_lv": bills["hosp_lv"].to_numpy().astype("int64"),
        "insutype": bills["insutype"].to_numpy(), "dise_code": bills["dise_code"].to_numpy(),
    })
    for c in SETTLEMENT_MONEY:
        out[c] = money[c].to_numpy()
    out["refund_of"] = np.full(len(out), None, dtype=object)
    return out


def _policy_frame(parts: list[pd.DataFrame], psn_no, P: dict, rng) -> pd.DataFrame:
    pol = pd.concat(parts, ignore_index=True)
    consent_of = rng.random(len(psn_no)) < P["consent_share"]
    year = pol["year"].to_numpy()
    return pd.DataFrame({
        "policy_no": [f"HHB{y % 100:02d}{i + 1:08d}" for i, y in enumerate(year)],
        "psn_no": psn_no[pol["person"].to_numpy()],
        "product_id": [f"{P['product_prefix']}-{y}" for y in year],
        "start_date": pd.to_datetime(pd.Series(year).astype(str) + "-01-01").to_numpy(),
        "end_date": pd.to_datetime(pd.Series(year).astype(str) + "-12-31").to_numpy(),
        "premium": np.full(len(pol), int(P["premium_yuan"]) * 100, "int64"),
        "preexisting": pol["preexisting"].to_numpy(),
        "consent": consent_of[pol["person"].to_numpy()],
    })


def second_city(persons: int, years: int, seed: int, start_year: int | None = None,
                params: dict | None = None,
                progress: Callable[[str], None] | None = None) -> FundData:
    """The whole city in memory (engine types); for tests and small cities."""
    got: dict[str, list[pd.DataFrame]] = {}
    for name, frame in generate(persons, years, seed, start_year, params, progress):
        got.setdefault(name, []).append(frame)

    def cat(name, columns):
        if name not in got:
            return pd.DataFrame({c: [] for c in columns})
        return pd.concat(got[name], ignore_index=True)
    return FundData(persons=got["persons"][0], policies=got["policies"][0],
                    settlements=cat("settlements", SETTLEMENT_COLUMNS),
                    lines=cat("lines", LINE_COLUMNS))


def write_second_city(persons: int, years: int, seed: int, out: str | Path,
                      start_year: int | None = None, params: dict | None = None,
                      progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write the city to ``out`` chunk by chunk (memory: one block of one year).
    Returns the row counts by table."""
    tables = {"settlements": SETTLEMENTS, "lines": SETTLEMENT_LINES,
              "policies": POLICIES, "persons": PERSONS}
    counts = dict.fromkeys(tables, 0)
    written = set()
    empty: dict[str, pd.DataFrame] = {}
    with appending():                      # each file's writer open until the end
        for name, frame in generate(persons, years, seed, start_year, params, progress):
            if not len(frame):
                empty[name] = frame
                continue
            write_table(frame, out, tables[name], append=name in written)
            written.add(name)
            counts[name] += len(frame)
        for name, frame in empty.items():  # a table with no rows at all (lines are optional)
            if name not in written and name != "lines":
                write_table(frame, out, tables[name])
    return counts


def calibration(data: FundData) -> pd.DataFrame:
    """Figures of a city by year (for the docs and the tests): people alive at 1 January,
    deaths, policies, settlements, stays per 1,000 people, mean cost per stay (yuan),
    launch take-up / renewal / later-entry rates, stays per 1,000 policies, cost per
    policy (yuan, all settlements of the insured year)."""
    st, pol, per = data.settlements, data.policies, data.persons
    year = pd.DatetimeIndex(st["setl_time"]).year.to_numpy()
    stay = st["med_type"].astype(str).to_numpy() == "21"
    pyear = pd.DatetimeIndex(pol["start_date"]).year.to_numpy()
    death_year = pd.DatetimeIndex(per["death_date"]).year.to_numpy()
    held = {y: set(pol.loc[pyear == y, "psn_no"]) for y in sorted(set(pyear))}
    rows = []
    for y in sorted(held):
        alive = int((np.isnan(death_year) | (death_year >= y)).sum()) if len(per) else 0
        on = year == y
        n_st = int((on & stay).sum())
        cost = st.loc[on & stay, "medfee_sumamt"].to_numpy()
        prev = held.get(y - 1)
        r = {"year": y, "people": alive, "deaths": int((death_year == y).sum()),
             "policies": len(held[y]), "settlements": int(on.sum()),
             "stays_per_1000": 1000 * n_st / max(alive, 1),
             "mean_cost_per_stay": float(cost.mean() / 100) if n_st else float("nan")}
        if prev is None:
            r["take_up"] = len(held[y]) / max(alive, 1)
        else:
            alive_set = set(per.loc[np.isnan(death_year) | (death_year >= y), "psn_no"])
            stayers = prev & alive_set
            r["renewal"] = len(held[y] & stayers) / max(len(stayers), 1)
            others = alive_set - prev
            r["entry"] = len(held[y] - prev) / max(len(others), 1)
        ins = st["psn_no"].astype(str).isin(held[y]).to_numpy() & on
        r["stays_per_1000_policies"] = 1000 * int((ins & stay).sum()) / max(len(held[y]), 1)
        r["cost_per_policy"] = float(st.loc[ins, "medfee_sumamt"].sum() / 100
                                     / max(len(held[y]), 1))
        r["cost_per_person"] = float(st.loc[on, "medfee_sumamt"].sum() / 100 / max(alive, 1))
        rows.append(r)
    return pd.DataFrame(rows)
