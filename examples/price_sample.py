"""A pricing of huhuibao-2025 on a cut of the sample (its first 3,000 persons, so it runs
in seconds; the whole sample takes some 20 s of CPU): the figures of ``puhui price``."""

import sys
import tempfile
from pathlib import Path

import puhui

fund = puhui.read_fund(puhui.api.SAMPLE).head(3000)
pricer = puhui.Pricer("huhuibao-2025", seed=1).fit(fund)

print(f"{pricer.product_.id} on {fund}")
print(pricer.premium_table_.to_string())
iv = pricer.loss_ratio_interval_
print(f"expected loss ratio {pricer.expected_loss_ratio_:.1%} "
      f"({iv['level']:.0%} interval {iv['lower']:.1%} to {iv['upper']:.1%})")
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "report.html"
print(f"report: {pricer.report(out)}")
