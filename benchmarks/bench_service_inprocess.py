"""CPU of a payout and of a reversal in the service's own code, without HTTP (issue 20):
the `Service` called directly against a throwaway PostgreSQL (puhui.tempdb), CPU of this
process (the server's Python) and of the PostgreSQL backend serving its connection (from
/proc), per request. Session 24's figures in docs/benchmarks.md came from this script's
two parts, base and new code run alternately (PYTHONPATH=OLD/src for the base).

    python benchmarks/bench_service_inprocess.py --persons 20000 --payouts 3000 --reversals 150
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AMOUNTS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "psn_part_amt",
           "hifp_pay", "hifob_pay", "hifmi_pay", "maf_pay")


def _cpu_of(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _people(city: Path, product: str) -> tuple[list[str], dict[str, str]]:
    import pandas as pd

    pol = pd.read_parquet(city / "policies.parquet")
    per = pd.read_parquet(city / "persons.parquet")
    who = sorted(set(pol.loc[pol["product_id"] == product, "psn_no"].astype(str)))
    return who, dict(zip(per["psn_no"].astype(str), per["insutype"].astype(str)))


def _timed(fn, items, pid: int) -> tuple[float, float]:
    """(ms of this process's CPU, ms of the backend's CPU) per item."""
    t, b = time.process_time(), _cpu_of(pid)
    for i, x in enumerate(items):
        fn(i, x)
    n = max(1, len(items))
    return (time.process_time() - t) * 1000 / n, (_cpu_of(pid) - b) * 1000 / n


def main(argv=None) -> None:
    from puhui.products.model import load_product, product_path
    from puhui.service import Service
    from puhui.tempdb import TempPostgres

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=20000)
    ap.add_argument("--payouts", type=int, default=3000, help="payouts timed, three times")
    ap.add_argument("--reversals", type=int, default=150)
    ap.add_argument("--product", default="huhuibao-2025")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp, TempPostgres(durable=False) as pg:
        city = Path(tmp) / "city"
        run = [sys.executable, "-m", "puhui"]
        subprocess.run([*run, "synth", "--persons", str(args.persons), "--years", "1",
                        "--start-year", "2025", "--seed", str(args.seed), "--out",
                        str(city)], check=True, capture_output=True)
        subprocess.run([*run, "ledger", "load", "--data", str(city), "--ledger", pg.url],
                       check=True, capture_output=True)
        who, kind = _people(city, args.product)
        svc = Service(load_product(product_path(args.product)), pg.url)
        rng = random.Random(args.seed)

        def body(i):
            p, inlist = who[rng.randrange(len(who))], rng.choice([300, 800, 2000, 5000, 12000])
            return dict(setl_id=f"L{i}", psn_no=p, med_type="21", hosp_lv=3,
                        setl_time=f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                        insutype=kind[p], medfee_sumamt=inlist * 3, fulamt_ownpay_amt=0,
                        overlmt_selfpay=0, psn_part_amt=inlist, hifp_pay=inlist * 2,
                        hifob_pay=0, hifmi_pay=0, maf_pay=0)

        done = [body(i) for i in range(300)]
        for i, b in enumerate(done):
            svc.settlement(b, "k", f"w{i}")
        pid = svc.connections.get()._con.execute("SELECT pg_backend_pid()").fetchone()[0]
        for rep in range(3):
            batch = [body(100000 * (rep + 1) + i) for i in range(args.payouts)]
            done += batch
            py, db = _timed(lambda i, b, r=rep: svc.settlement(b, "k", f"m{r}-{i}"), batch, pid)
            print(f"payout: server Python {py:.3f} ms, backend {db:.3f} ms")

        def reverse(k, b):
            r = {**b, "setl_id": f"V{k}", "refund_of": b["setl_id"]}
            r.update({a: -b[a] for a in AMOUNTS})
            svc.reversal(r, "k", f"r{k}")

        py, db = _timed(reverse, rng.sample(done, args.reversals), pid)
        print(f"reversal (after {len(done)} payouts on {len(who)} people): server Python "
              f"{py:.3f} ms, backend {db:.3f} ms")
        svc.connections.drop()


if __name__ == "__main__":
    main()
