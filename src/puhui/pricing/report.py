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

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pricing {{ f.product_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1050px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 3px 7px; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
img { max-width: 100%; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 85%; }
.warn { color: #a00; }
</style></head><body>
<h1>Pricing of {{ f.product_name }} ({{ f.product_id }})</h1>
<p>puhui {{ m.package_version }}, seed {{ f.seed }}. Inputs and their hashes are in
<code>manifest.json</code>; <code>puhui reproduce manifest.json</code> re-runs this pricing
and checks every figure.</p>
{% if f.notes %}<h2>Notes</h2><ul>{% for n in f.notes %}<li class="warn">{{ n }}</li>{% endfor %}</ul>{% endif %}

{% set EA = ' [A]' if f.enrolment and f.enrolment.assumed else '' %}<h2>Data</h2>
<table>
<tr><th>person-years</th><td class="n">{{ '{:,}'.format(f.data.person_years) }}</td></tr>
<tr><th>years</th><td>{{ f.data.years|join(', ') }}</td></tr>
<tr><th>exposure (years)</th><td class="n">{{ '{:,.1f}'.format(f.data.exposure) }}</td></tr>
<tr><th>person-years enrolled in a product</th><td class="n">{{ '{:,}'.format(f.data.enrolled_person_years) }}</td></tr>
<tr><th>people eligible, last data year</th><td class="n">{{ '{:,}'.format(f.data.eligible_people_last_year) }}</td></tr>
<tr><th>policies priced for (expected enrolment next year){{ EA }}</th><td class="n">{{ '{:,}'.format(f.policies) }}</td></tr>
<tr><th>priced period</th><td>{{ f.basis.priced_period.start }} to {{ f.basis.priced_period.end }}</td></tr>
</table>

{% if f.enrolment %}<h2>Who enrols</h2>
{% set e = f.enrolment %}<p>The mix priced: <b>{{ e.mode }}</b>.
{% if e.launch_year %}Launch take-up ({{ e.launch_year }}, the first policy year): {{ e.launch_take_up|pct }}.{% endif %}
{% if e.fit_years %}Renewal {{ e.renewal_rate|pct }} and later entry {{ e.entry_rate|pct }}, fitted on
{{ e.fit_years|join(', ') }} with {{ e.lookback_years }} year(s) of look-back (the product's definition:
{{ e.product_lookback_years }}); the first data year is look-back only, and health status is the
product's pre-existing rule applied alike to the enrolled and the others.{% endif %}</p>
{% if e.assumed %}{% set a = e.assumed %}<p class="warn">[A] The data ends with the launch year: no renewal
can be seen, so next year's mix borrows renewal by health at renewal (healthy {{ a.renewal_healthy }},
sick {{ a.renewal_sick }}; sick = a pre-existing diagnosis or an inpatient stay in the launch year)
and a year-2 size of {{ a.year2_to_launch }} x the launch's policies, from <code>{{ a.file }}</code>
({{ a.sources.healthy }}; {{ a.sources.sick }}; {{ a.sources.year2_to_launch }}): of
{{ '{:,}'.format(a.launch_policies) }} launch policies, {{ '{:,}'.format(a.renewals) }} expected to renew and
{{ '{:,}'.format(a.entrants) }} to join later; the sick share {{ a.sick_share_launch|pct }} at launch,
{{ a.sick_share_next|pct }} next year. Every figure marked [A] rests on these assumptions.</p>{% endif %}{% endif %}
{% if f.equilibrium %}{% set q = f.equilibrium %}<p>Equilibrium gross premium{{ EA }} (the price that breaks even on the people it draws).
First year (next year's mix, from this year's book): {% if q.premium %}<b>{{ '{:,.2f}'.format(q.premium) }}</b> yuan with about
{{ '{:,.0f}'.format(q.policies) }} policies{% if q.interval %} (parameter uncertainty {{ q.interval.lower }} to
{{ q.interval.upper }}){% endif %}; by price-response scenario: {% for k, v in q.by_scenario.items() %}{{ k }} {{ v if v else 'none' }}{% if not loop.last %}, {% endif %}{% endfor %}{% else %}none{% endif %}.
Long run (the stationary mix of renewal and entry at a price held for good, where the spiral tends):
{% if q.long_run.premium %}<b>{{ '{:,.2f}'.format(q.long_run.premium) }}</b> yuan with about {{ '{:,.0f}'.format(q.long_run.policies) }}
policies{% if q.long_run.interval %} ({{ q.long_run.interval.lower }} to {{ q.long_run.interval.upper }}){% endif %}{% else %}none: no price
from 1/100 to 100 times the reference premium breaks even with a policy left (the spiral ends with nobody insured){% endif %}.
{% if f.gross_premium is number %} Beside them, the break-even gross
premium at the projected mix, {{ '{:,.2f}'.format(f.gross_premium) }} yuan, assumes the mix does not
answer the price.{% endif %}</p>{% endif %}

<h2>Premium build-up (yuan per policy)</h2>
<table><tr><th>benefit</th><th>pure premium</th></tr>
{% set ext = f.external_assumptions.benefits if f.external_assumptions else {} %}{% set A = ' [A]' if ext or EA else '' %}
{% for b, v in f.pure_premium.items() if b != 'total' %}<tr><td>{{ b }}{% if b in ext %} [A]{% endif %}</td><td class="n">{{ '{:,.2f}'.format(v) }}</td></tr>{% endfor %}
<tr><th>total pure premium{{ A }}</th><th class="n">{{ '{:,.2f}'.format(f.pure_premium.total) }}</th></tr>
<tr><td>of which: severity trend factor {{ f.basis.severity_trend_factor }} ({{ f.basis.medical_inflation * 100 }} % a year over {{ f.basis.trend_years }} years)</td><td></td></tr>
<tr><td>target loss ratio = 1 - expenses {{ f.basis.expense_ratio }} - profit {{ f.basis.profit_margin }}</td><td class="n">{{ f.basis.target_loss_ratio }}</td></tr>
{% if f.gross_premium is number %}<tr><th>gross premium = pure / target loss ratio{{ A }}</th><th class="n">{{ '{:,.2f}'.format(f.gross_premium) }}</th></tr>{% endif %}
{% if f.filed_premium %}<tr><td>filed premium (the product file's)</td><td class="n">{{ '{:,.2f}'.format(f.filed_premium) }}</td></tr>{% endif %}
</table>
{% if f.gross_premium is not number %}<table><tr><th>ages</th><th>pre-existing</th><th>filed</th><th>gross premium</th></tr>
{% for c in f.gross_premium %}<tr><td>{{ c.min_age }}-{{ c.max_age }}</td><td>{{ c.preexisting }}</td><td class="n">{{ c.filed_premium }}</td><td class="n">{{ c.gross_premium }}</td></tr>{% endfor %}</table>{% endif %}
{% if f.rated_cells %}<p>Each premium cell's enrolment answering its own premium (the spiral's price response;
the healthy inside a cell leave a dear cell first): policies and loss ratio at the filed premium, and the
cell's equilibrium premium.</p>
<table><tr><th>ages</th><th>pre-existing</th><th>people</th><th>filed</th><th>policies at filed</th><th>loss ratio at filed</th><th>equilibrium premium</th><th>policies at equilibrium</th></tr>
{% for c in f.rated_cells %}<tr><td>{{ c.min_age }}-{{ c.max_age }}</td><td>{{ 'any' if c.preexisting is none else ('yes' if c.preexisting else 'no') }}</td>{% if c.people < min_people %}<td colspan="6">fewer than {{ min_people }} people: not shown</td></tr>{% else %}<td class="n">{{ '{:,}'.format(c.people) }}</td><td class="n">{{ '{:,.2f}'.format(c.filed_premium) }}</td><td class="n">{{ c.policies_at_filed }}</td><td class="n">{{ c.loss_ratio_at_filed|pct }}</td><td class="n">{{ '{:,.2f}'.format(c.equilibrium_premium) if c.equilibrium_premium else 'none' }}</td><td class="n">{{ c.policies_at_equilibrium }}</td></tr>{% endif %}{% endfor %}</table>{% endif %}
{% if ext %}<p class="warn">[A]: rests partly on an external assumption (below, "Benefits priced on
external assumptions"): the benefits marked, and every total, premium and loss ratio that includes them.</p>{% endif %}
{% if EA %}<p class="warn">[A]: rests on the borrowed enrolment assumptions ("Who enrols"): the mix,
so every total, premium and loss ratio.</p>{% endif %}
<p>Expected loss ratio{{ A }} at the {{ f.loss_ratio_basis }}: <b>{{ f.expected_loss_ratio|pct }}</b>;
{{ f.loss_ratio_interval.level|pct0 }} interval {{ f.loss_ratio_interval.lower|pct }} to
{{ f.loss_ratio_interval.upper|pct }}; probability of a loss ratio above 100 %:
<b>{{ f.prob_loss_ratio_above_100|pct }}</b>. Pure premium interval (parameter uncertainty and the level error the balance leaves):
{{ f.pure_premium_interval.lower }} to {{ f.pure_premium_interval.upper }}.
The interval combines normal draws of every GLM's coefficients (moving the pure premium through its
elasticities to frequency and severity) with the year's total claims over {{ '{:,}'.format(f.policies) }}
policies as a gamma variable with the portfolio's mean and variance, and each pricing group's
level error left after the balance (Bühlmann's posterior variance (1 - Z) &tau;&sup2; of the model's level,
as a share of the balanced cost). It leaves out the uncertainty of the dispersion, the tail shape
and the enrolment model, and model error beyond the level of the years fitted (a wrong factor set,
selection the cells cannot see): read it as a lower bound on the real uncertainty.</p>
{% if f.claim_free_steps %}{% for gid, c in f.claim_free_steps.items() %}<p>Claim-free deductible steps of {{ gid }}:
{% for st in c.steps %}{{ st.share_of_policies|pct }} of next year's policies at {{ '{:,.0f}'.format(st.deductible) }}
(after {{ st.claim_free_years }} claim-free years){% if not loop.last %}; {% endif %}{% endfor %}.
Model pure premium {{ '{:,.2f}'.format(c.model_pure_premium_first_year_deductible) }} at the first-year deductible,
{{ '{:,.2f}'.format(c.model_pure_premium_with_steps) }} with the steps ({{ c.note }}).</p>{% endfor %}{% endif %}
{% if f.balance %}<h3>Balance: each model at the level of the years it was fitted on</h3>
<p>Per pricing group, the model's expected annual benefit against the product's calculator on the same
person-years (as-if payouts, yuan, no trend); factor = Z A/E + (1 - Z), multiplying the model everywhere
it is used{% set r0 = (f.balance.values()|list)[0] %}{% if r0.rule == 'buhlmann' %}; Z = n / (n + (1 + cv&sup2;) / &tau;&sup2;), &tau; = {{ r0.model_bias_sd }}
(<code>[balance] model_bias_sd</code>), n the person-years paid{% else %}; Z = min(1, &radic;(n / (N (1 + cv&sup2;)))),
limited fluctuation (<code>[balance] full_credibility_events</code>){% endif %} (docs/pricing.md, "balance").</p>
{% set SEL = f.balance.values()|selectattr('enrolled')|list %}<table><tr><th>group</th><th>as-if paid</th><th>model expected</th><th>A/E</th><th>person-years paid</th><th>cv</th><th>Z</th><th>factor</th>{% if SEL %}<th>enrolled: A/E</th><th>person-years paid</th><th>Z</th><th>factor</th>{% endif %}</tr>
{% for gid, b in f.balance.items() %}<tr><td>{{ gid }}</td><td class="n">{{ '{:,.2f}'.format(b.actual) }}</td><td class="n">{{ '{:,.2f}'.format(b.expected) }}</td><td class="n">{{ '{:.3f}'.format(b.actual_to_expected) if b.actual_to_expected is not none else 'n/a' }}</td><td class="n">{{ '{:,}'.format(b.claims) }}</td><td class="n">{{ '{:.2f}'.format(b.cv) }}</td><td class="n">{{ '{:.3f}'.format(b.Z) }}</td><td class="n">{{ '{:.4f}'.format(b.factor) }}</td>{% if SEL %}{% set e = b.enrolled %}{% if e %}<td class="n">{{ '{:.3f}'.format(e.actual_to_expected) if e.actual_to_expected is not none else 'n/a' }}</td><td class="n">{{ '{:,}'.format(e.claims) }}</td><td class="n">{{ '{:.3f}'.format(e.Z) }}</td><td class="n">{{ '{:.4f}'.format(e.factor) }}</td>{% else %}<td colspan="4">not applied</td>{% endif %}{% endif %}</tr>
{% endfor %}</table>
{% if SEL %}<p>Enrolled: the insured book of the same years against the balanced model in its own cells (the
cells cannot see all that moves a person to buy), by the same rule; its factor multiplies the
balanced model for the book priced (<code>[balance] enrolled = true</code>; "not applied" where no one,
or everyone, of those years held a policy). Off in the shipped basis: on the backtests it
made 7 of 8 rows worse (docs/pricing.md).</p>{% endif %}{% endif %}
{% if plots.lr %}<img alt="loss ratio distribution" src="data:image/png;base64,{{ plots.lr }}">{% endif %}
{% if f.experience %}<p>As-if experience of the enrolled (the product's calculator on their settlements,
data years, no trend): {{ f.experience.as_if_paid_per_enrolled_policy_year }} yuan per policy-year.
Actual / expected over all person-years: {{ f.actual_to_expected }}; Gini of the model's ordering: {{ '%.3f'|format(gini) }}.</p>{% endif %}

<h2>Backtest: the price built the same way a year earlier, against what that year cost</h2>
{% set B = f.backtest %}{% if B is not defined or B is none %}<p>Not run (<code>--no-backtest</code>);
<code>puhui backtest</code> runs it on its own.</p>
{% elif not B.years %}<p>No backtest: {{ B.reason }}.</p>
{% else %}<p>{% if B.scope == 'last' %}The last data year, {{ B.years[0].year }},{% else %}Each data year
that has earlier years{% endif %} is priced from the years before it alone (the same build-up as above,
its mix projected and its trend run to that year) and set against what that year's enrollees cost under
the product: the product's calculator on settlements that price never saw. This check does not rest on the
model's own structure. The prediction interval adds the process variance of one year's claims over the
policies actually sold to the price's parameter uncertainty and level error.{% if B.scope == 'last' %} Earlier years:
<code>puhui backtest</code>, or <code>puhui price --backtest-all-years</code>.{% endif %}</p>
{% for y in B.years %}<h3>{{ y.year }}, priced from {{ y.data_years|join(', ') }}: {{ y.terms }}</h3>
<p><b>{{ B.reading[loop.index0] }}</b></p>
{{ backtest_tables[loop.index0][0] }}
{{ backtest_tables[loop.index0][1] }}
{% if y.notes %}<p>Notes of that pricing:</p><ul>{% for n in y.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% endfor %}{% if B.notes %}<ul>{% for n in B.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}{% endif %}

{% if ext %}<h2>Benefits priced on external assumptions [A]</h2>
<p>A benefit with little or no data is priced on figures from outside the data
(<code>actuarial/assumptions/{{ f.external_assumptions.file }}</code>), blended with its data by
limited-fluctuation credibility: per cell, external E[B] = incidence per 100,000 of the cell's age band /
100,000 x uptake x min(max(cost per case - deductible, 0) x ratio, limit); blended = Z x data + (1 - Z) x
external with Z = min(1, sqrt(events / n_full)). The pure premiums below are over the enrolled mix,
before the cells' credibility factors and drug refunds. The interval above carries no uncertainty of
the assumptions themselves.</p>
<table><tr><th>benefit</th><th>events in the data</th><th>Z</th><th>data</th><th>external</th><th>blended</th><th>cost per case</th><th>payout per case</th><th>uptake</th><th>sources</th></tr>
{% for b, e in ext.items() %}<tr><td>{{ b }}</td><td class="n">{{ e.events if e.events == 0 or e.events >= min_people else '<' ~ min_people }}</td><td class="n">{{ e.Z }}</td>
<td class="n">{{ '{:,.2f}'.format(e.data_pure_premium) }}</td><td class="n">{{ '{:,.2f}'.format(e.external_pure_premium) }}</td><td class="n">{{ '{:,.2f}'.format(e.blended_pure_premium) }}</td>
<td class="n">{{ '{:,.0f}'.format(e.cost_per_case) }}</td><td class="n">{{ '{:,.0f}'.format(e.payout_per_case) }}</td><td class="n">{{ e.uptake }}</td>
<td><ul>{% for k, src in e.sources.items() %}<li>{{ k }}: {{ src }}</li>{% endfor %}</ul></td></tr>{% endfor %}</table>
<table><tr><th>benefit</th>{% for band in (ext.values()|first).incidence_per_100000 %}<th>{{ band }}</th>{% endfor %}</tr>
{% for b, e in ext.items() %}<tr><td>{{ b }}: incidence per 100,000</td>{% for v in e.incidence_per_100000.values() %}<td class="n">{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}

<h2>Pricing groups and their models</h2>
<p>Each benefit (or benefits sharing a deductible or limit) is priced on its annual sum: inpatient and
outpatient claims each have a Poisson frequency GLM (log exposure offset, fitted on rating cells) with a
negative-binomial dispersion, a gamma severity GLM, and a severity shape that is empirical up to the 95th
percentile and generalised Pareto above it; the annual sum's distribution per cell comes by FFT and the
benefit's deductible, ratio and limit apply to it.</p>
{{ groups }}
<h3>Coefficients (relativities, standard errors)</h3>
{{ coefficients }}

{% if credibility %}<h2>Credibility of the cells' own experience (Bühlmann-Straub)</h2>
<p>Per cell of {{ f.credibility.by|join(' x ') }} and data year, actual / expected (the as-if payouts
over the models' expected); Bühlmann-Straub with the expected payouts as weights: within-cell
variance {{ f.credibility.within }}, between-cell variance {{ f.credibility.between }}, k =
{{ f.credibility.k }} yuan of expected payouts (a cell with that much gets Z = 0.5). Each cell's
modelled cost is multiplied by its estimate / the collective A/E {{ f.credibility.collective_actual_to_expected }},
so the overall level stays the models' and thin cells stay at the model. Effect on the pure premium
of the enrolled mix: x {{ f.credibility.adjustment_to_pure_premium }} (model alone:
{{ '{:,.2f}'.format(f.pure_premium_model.total) }} yuan).</p>
{{ credibility }}{% if credibility_hidden %}<p>{{ credibility_hidden }} cells of fewer than {{ min_people }} people are not shown (they are in the calculation).</p>{% endif %}{% endif %}
<h2>Actual versus expected</h2>
<p>Expected: the models' annual benefit (no trend) for each person-year of the data; actual: the
product's calculator on the same person-years.</p>
{% for name, img in plots.one_way %}<img alt="A/E by {{ name }}" src="data:image/png;base64,{{ img }}">{% endfor %}
{{ one_way }}
<h3>Calibration and lift by decile of expected cost</h3>
{% if plots.deciles %}<img alt="calibration by decile" src="data:image/png;base64,{{ plots.deciles }}">{% endif %}
{{ deciles }}

{% if f.budget_impact_class_c and f.budget_impact_class_c.drugs is not defined and budget %}<h2>Budget impact: the class-C list added to the product [A]</h2>
<p>No experience exists for these drugs, so users = policyholders expected next year with a main
diagnosis among a drug's indications x uptake {{ f.budget_impact_class_c.uptake }} (shared among drugs
with the same indications, an assumption [A]) x the benefit one year at the listed price pays under the
benefit that would pay it (column paid_under: a CAR-T under the CAR-T benefit, with its limit; the
others under the special-drug benefit).
Pure premium per insured <b>{{ f.budget_impact_class_c.pure_premium_per_insured }}</b> yuan
(gross {{ f.budget_impact_class_c.gross_premium_per_insured }}), total
{{ '{:,.0f}'.format(f.budget_impact_class_c.total) }} yuan over {{ '{:,}'.format(f.budget_impact_class_c.policies) }} policies.</p>
{{ budget }}{% endif %}

{% if validation %}<h2>Out-of-sample checks and the gradient-boosted challenger</h2>
<p>5-fold cross-validation by person (scikit-learn): mean Poisson deviance of a constant rate, the
Poisson GLM and a gradient-boosted model (HistGradientBoostingRegressor, Poisson loss) on the same
factors; Gini of each ordering; calibration of the GLM by decile of predicted rate on the test folds.</p>
{% for name, cv_table, calib, lorenz in validation %}<h3>{{ name }}</h3>{{ cv_table }}
{% if lorenz %}<img alt="Lorenz curves" src="data:image/png;base64,{{ lorenz }}">{% endif %}{{ calib }}{% endfor %}{% endif %}

{% if spiral %}<h2>Death-spiral projection{{ EA }}</h2>
<p>Each year's price is set on the previous year's mix; renewal and entry respond to the price
(log-odds shift beta log(P / P_ref), beta by health, scenarios from the assumptions file);
the population is held fixed. "filed price held" keeps the product's premium; "central from
equilibrium" sells the first year at the equilibrium premium.</p>
{% if plots.spiral %}<img alt="spiral" src="data:image/png;base64,{{ plots.spiral }}">{% endif %}
{{ spiral }}{% endif %}

{% if f.drug_agreements %}<h2>Outcome-based drug agreements: expected refunds</h2>
<p>Each agreement drug takes off its benefit's pure premium its share of the benefit's
eligible line amounts x the expected refund as a share of the drug cost, from a survival
curve (Kaplan-Meier of the data's treated patients where there are enough deaths, else an
exponential curve with the published median). {{ f.drug_agreements.note }}.</p>
{{ agreement_benefits }}
{{ agreement_drugs }}
{% if agreement_caps %}<h3>Price-volume caps</h3>
<p>The year's spending on a capped drug under the product is compound Poisson (patients x
spending per patient-year from the data, trended), taken as a gamma; its mean excess over
the cap times the product's part of the spending is the expected clawback.</p>
{{ agreement_caps }}{% endif %}{% endif %}

{% if f.lifetime %}{% set L = f.lifetime %}{% set A = L.basis.age_curve %}<h2>Lifetime price (renewable to age {{ L.basis.ages[1] }})</h2>
<p>The headline level premium is on a prudent basis: <b>no lapse</b> (death only; a
lapse-supported premium counts on those who leave forfeiting their reserve) and <b>no
future trend</b> (today's money: premium reviews every {{ L.basis.trend.review_years }}
years carry the medical trend, the re-rating path below). Expected claims by single
attained age: a graduated curve of the as-if payouts per person-year at ages
{{ A.ages[0] }}-{{ A.ages[1] }} ({{ '{:,.0f}'.format(A.person_years) }} person-years;
Whittaker-Henderson on the log scale, smoothing by cross-validation: {{ A.edf }} degrees of
freedom{% if A.prior is mapping %}; prior: the log-linear fit on ages {{ A.prior.ages[0] }}-{{ A.prior.ages[1] }}
(slope {{ '%.4f' % A.prior.b }} a year of age) worth {{ A.prior.person_years_each_age }}
person-years at each age{% else %}; prior: {{ A.prior }}{% endif %};
{% if A.monotone %}rising with age{% else %}not monotone: the data reject a rising curve{% endif %}),
at the models' level for each sex (enrolled mix, trended to the policy year, after
credibility). Death: {{ L.basis.mortality.source }}{% if L.basis.mortality.multiplier != 1 %} x {{ L.basis.mortality.multiplier }}{% endif %}.
Lapse: {{ L.basis.lapse }}. Interest {{ L.basis.interest | pct }}, claims paid at
{{ L.basis.claim_timing }} of the year. Benefit growth with medical inflation (deductible leverage
included), for the reviews: {% for k, v in L.basis.trend.benefit_growth.items() %}{{ k }} x{{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.
{{ L.basis.note }}.</p>
{% if plots.lifetime_claims %}<img alt="claims by age" src="data:image/png;base64,{{ plots.lifetime_claims }}">{% endif %}
<h3>The curve against the models' age bands (enrolled mix, yuan a year)</h3>
{{ lifetime_bands }}
<h3>Level premium by entry age (yuan a year, for life, today's money)</h3>
{{ lifetime_entries }}
{% if L.loss_ratio_at_filed_schedule %}{% set F = L.loss_ratio_at_filed_schedule %}<h3>Loss ratio at the product file's premium schedule</h3>
<p>Over the entrants' mix (entry ages weighted by the enrolled mix, present values over the
cover without lapse): <b>{{ F.entrants_mix | pct }}</b>; in the first year, over the
eligible mix: <b>{{ F.first_year_eligible_mix | pct }}</b>. {{ F.note }}.</p>
{{ lifetime_filed }}{% endif %}
<h3>Re-rating path: the gross premium after each review (yuan a year)</h3>
<p>At each review the premium rises by the benefit growth since the last review times the
future claims over the future premiums; inside a review period claims outgrow the premium
(the review lag, shown per entry age above as a share of the trended claims).</p>
{{ lifetime_reviews }}
<h3>Lapse sensitivity: lapse by policy duration in the data</h3>
{{ lifetime_lapse }}
<h3>Step-rated schedule (today's money, re-rated each year with the trend) against the one-year price</h3>
{{ lifetime_steps }}
<h3>Projection for entrants at {{ lifetime_age }} (no lapse)</h3>
{% if plots.lifetime_projection %}<img alt="projection" src="data:image/png;base64,{{ plots.lifetime_projection }}">{% endif %}
{{ lifetime_projection }}
{% if plots.lifetime_age_fit %}<h3>Diagnostics: the age curve against the as-if payouts</h3>
<p>As-if payouts per person-year by five-year age (data years) against the graduated curve
(before its level factor) and the prior; ages with fewer than {{ min_people }} people are
left out.</p>
<img alt="age fit" src="data:image/png;base64,{{ plots.lifetime_age_fit }}">{% endif %}
{% endif %}

<h2>Assumptions (with sources)</h2>
<pre>{{ assumptions_text }}</pre>
<p>Small cells: no row above describes fewer than {{ min_people }} people{% if suppressed %}
({{ suppressed }} row(s) merged or left out){% endif %}.</p>
</body></html>
"""


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


def _html(df: pd.DataFrame, floats: str = "{:,.2f}") -> str:
    return df.to_html(index=False, float_format=lambda x: floats.format(x), na_rep="",
                      border=0, classes="t")


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


def _agreement_tables(figures: dict) -> dict:
    from markupsafe import Markup

    ag = figures["drug_agreements"]
    benefits = pd.DataFrame([{"benefit": b, **v} for b, v in ag["benefits"].items()])
    benefits["refund_share"] = benefits["refund_share"].map(lambda v: f"{v:.2%}")
    drugs = pd.DataFrame(ag["drugs"])
    for col in ("expected_refund_share", "share_of_benefit_amounts"):
        drugs[col] = drugs[col].map(lambda v: f"{v:.2%}")
    # a drug taken by fewer people than a report may show: its patient count is hidden
    caps = pd.DataFrame(ag.get("price_volume_caps") or [])
    return {"agreement_caps": Markup(_html(caps, "{:,.2f}")) if len(caps) else None,
            "agreement_benefits": Markup(_html(benefits, "{:,.2f}")),
            "agreement_drugs": Markup(_html(drugs.assign(treated_patients=drugs[
                "treated_patients"].map(lambda n: n if n >= 10 or n == 0 else "<10")),
                "{:,.4g}"))}


def _lifetime_tables(figures: dict, tables: dict, min_people: int = 10) -> dict:
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
    return {"lifetime_entries": Markup(_html(entries, "{:,.2f}")),
            "lifetime_steps": Markup(_html(steps, "{:,.2f}")),
            "lifetime_reviews": Markup(_html(reviews, "{:,.2f}")),
            "lifetime_bands": Markup(_html(bands, "{:,.4g}")),
            "lifetime_lapse": Markup(_html(lapse, "{:,.4f}")) if len(lapse) else
            Markup("<p>No renewal in the data: the stated rate throughout.</p>"),
            "lifetime_filed": Markup(_html(filed, "{:,.2f}")) if filed is not None else "",
            "lifetime_projection": Markup(_html(p, "{:,.4f}")), "lifetime_age": young}


def _backtest_tables(figures: dict, min_people: int = 10) -> list:
    """Per backtest year: the priced pure premium against the realised cost per policy
    by benefit and in total, and the policies with the prediction interval. A year of
    fewer than ``min_people`` policies shows no realised figure."""
    from markupsafe import Markup

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
            f"{level} prediction interval (yuan per policy)": (
                "none" if iv["lower"] is None else f"{iv['lower']:,.2f} to {iv['upper']:,.2f}"),
            "covers the realised cost": {True: "yes", False: "no", None: "n/a"}[iv["covers"]]}])
        small = ("" if shown else
                 f"<p>Fewer than {min_people} policies: the realised cost is not shown.</p>")
        out.append((Markup(_html(t, "{:,.2f}") + small), Markup(_html(p))))
    return out


def render(figures: dict, tables: dict, manifest: dict, assumptions_text: str,
           lr_draws: np.ndarray | None = None, min_people: int = 10) -> str:
    from jinja2 import Environment
    from markupsafe import Markup

    touched = 0
    one_way, n = suppress_small(tables["ae_one_way"], "people", min_people, ("actual", "expected"))
    touched += n
    one_way = one_way.assign(ae=one_way["actual"] / one_way["expected"])
    deciles, n = suppress_small(tables["ae_deciles"], "people", min_people, ("actual", "expected"))
    touched += n
    tables = {**tables, "ae_one_way": one_way, "ae_deciles": deciles}
    groups = tables["groups"].drop(columns=["note"], errors="ignore").copy()
    for col in ("deductible", "limit"):
        groups[col] = groups[col].map(lambda v: f"{v:,.0f}" if np.isfinite(v) else "none")
    # an event count is a count of people's claims: under the threshold it is not shown
    groups["events"] = groups["events"].map(
        lambda n: f"{n:,}" if n >= min_people or n == 0 else f"<{min_people}")
    plots = _plots(tables, figures, lr_draws, min_people)
    validation = []
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
        validation.append((name, Markup(_html(cv["folds"], "{:.5f}")),
                           Markup(_html(calib, "{:,.2f}")), png_base64(fig)))
    spiral = tables.get("spiral")
    cred, cred_hidden = tables.get("credibility"), 0
    if cred is not None:
        shown = cred["person_years"] >= min_people
        cred_hidden = int((~shown).sum())
        cred = cred[shown].drop(columns=["periods"], errors="ignore")
    env = Environment(autoescape=True)
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{v:.1%}"
    env.filters["pct0"] = lambda v: "n/a" if v is None else f"{v:.0%}"
    return env.from_string(TEMPLATE).render(
        f=figures, m=manifest, plots=plots, gini=tables.get("gini", float("nan")),
        groups=Markup(_html(groups, "{:,.4g}")),
        coefficients=Markup(_html(tables["coefficients"], "{:.4f}")),
        one_way=Markup(_html(one_way)), deciles=Markup(_html(deciles)),
        spiral=Markup(_html(spiral, "{:,.4f}")) if spiral is not None else None,
        validation=validation,
        credibility=Markup(_html(cred, "{:,.4f}")) if cred is not None else None,
        credibility_hidden=cred_hidden,
        budget=Markup(_html(tables["budget_impact"], "{:,.2f}")) if "budget_impact" in tables else None,
        assumptions_text=assumptions_text, min_people=min_people, suppressed=touched,
        backtest_tables=_backtest_tables(figures, min_people),
        **(_lifetime_tables(figures, tables, min_people) if "lifetime" in figures else {}),
        **(_agreement_tables(figures) if "drug_agreements" in figures else {}))
