"""Load test of `puhui serve` (issue 20, point 4), on loopback only (127.0.0.1).

N concurrent clients send settlements for overlapping persons (insured people of a
synthetic city, each settled many times over the year), reversals of a share of the
acknowledged settlements (``POST /v1/reversal``, sent once the original was answered),
repeats of a settlement or a reversal under the same Idempotency-Key (the platform
retrying) and repeats of an id without a key;
optionally the server is killed (SIGKILL) in the middle and started again, and every
request that had no answer is sent again under its key. Printed: throughput, latency
p50 / p99 / max, counts by status, errors; then the checks:

- every acknowledged settlement (201, or 200 already decided) is in the ledger with the
  payout it was told (a first answer: the direct payout's own entries; a later one, of
  a person no reversal touched: the decisions), every acknowledged reversal is recorded
  with the entries it listed, and nothing unacknowledged is half-written (each decided
  settlement has its five decisions);
- a 409 only for a repeat, without a key, of a settlement reversed since (a repeat under
  its key gets the first answer);
- every settlement's net entries equal its current decision (no double payment or
  double reversal), at most one reversing entry per settlement and benefit;
- a repeat under its key got the first answer (byte for byte as JSON);
- the ledger equals a sequential replay of the decided settlements and the applied
  reversals, in the order the ledger committed them, into a fresh SQLite ledger (net
  paid per person, every accumulator, every settlement's payout): no double and no
  lost payment.

    python benchmarks/bench_service.py --backend postgres --requests 100000 --clients 16
    python benchmarks/bench_service.py --backend sqlite --requests 20000 --kill-after 5000

The PostgreSQL server is a throwaway one (puhui.tempdb).
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "puhui", *args], capture_output=True,
                       text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"puhui {' '.join(args)} failed: {r.stderr[-2000:]}")
    return r


def make_city(persons: int, seed: int, out: Path) -> Path:
    _run("synth", "--persons", str(persons), "--years", "1", "--start-year", "2025",
         "--seed", str(seed), "--out", str(out))
    return out


def insured(city: Path, product_id: str) -> list[tuple[str, str]]:
    """(psn_no, insutype) of the product's policyholders."""
    import pandas as pd

    pol = pd.read_parquet(city / "policies.parquet")
    per = pd.read_parquet(city / "persons.parquet")
    kind = dict(zip(per["psn_no"].astype(str), per["insutype"].astype(str)))
    who = sorted(set(pol.loc[pol["product_id"] == product_id, "psn_no"].astype(str)))
    return [(p, kind[p]) for p in who]


def workload(people: list[tuple[str, str]], n: int, seed: int, repeat_share: float = 0.05,
             reversal_share: float = 0.03) -> list[dict]:
    """``n`` requests: settlements (unique ids, spread over the year and over few
    people so the same person is settled at once by several clients), reversals of
    earlier settlements (``of``: the original's request, each reversed once), and
    repeats of earlier ones (half under the same Idempotency-Key, half without one)."""
    rng = random.Random(seed)
    out: list[dict] = []
    reversed_: set[int] = set()
    for i in range(n):
        if out and rng.random() < reversal_share:
            j = rng.randrange(len(out))
            if out[j]["kind"] == "settlement" and out[j]["repeat_of"] is None and \
                    j not in reversed_:
                reversed_.add(j)
                out.append({"kind": "reversal", "of": j, "idem": f"idem-{seed}-{i}",
                            "repeat_of": None, "body": reversal_of(out[j]["body"],
                                                                   f"V{seed}-{i}")})
                continue
        if out and rng.random() < repeat_share:
            first = out[rng.randrange(len(out))]
            rep = dict(first, repeat_of=first["idem"])
            if rng.random() < 0.5:
                rep["idem"] = None              # the id alone makes it idempotent
            out.append(rep)
            continue
        psn, kind = people[rng.randrange(len(people))]
        inlist = rng.choice([300, 800, 2000, 5000, 12000, 30000])
        day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        body = dict(setl_id=f"L{seed}-{i}", psn_no=psn, setl_time=day, med_type="21",
                    hosp_lv=3, insutype=kind, medfee_sumamt=inlist * 3,
                    fulamt_ownpay_amt=0, overlmt_selfpay=0, psn_part_amt=inlist,
                    hifp_pay=inlist * 2, hifob_pay=0, hifmi_pay=0, maf_pay=0)
        out.append({"kind": "settlement", "body": body, "idem": f"idem-{seed}-{i}",
                    "repeat_of": None, "of": None})
    return out


def reversal_of(body: dict, setl_id: str) -> dict:
    """The reversing settlement of ``body`` as the platform sends it: the same fields,
    the amounts negated, its own id, refund_of the original, dated the same day."""
    neg = {k: -v for k, v in body.items() if isinstance(v, (int, float)) and k != "hosp_lv"}
    return body | neg | {"setl_id": setl_id, "refund_of": body["setl_id"]}


class Server:
    """`puhui serve` in a child process on a free loopback port."""

    def __init__(self, product: str, url: str, port: int, log: Path, workers: int = 1):
        self.product, self.url, self.port, self.log = product, url, port, log
        self.workers = workers
        self.proc = None

    def start(self) -> None:
        import httpx

        fh = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "puhui", "serve", "--product", self.product, "--ledger",
             self.url, "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            stdout=fh, stderr=fh)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server stopped: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the server did not answer /healthz within 60 s")

    def kill(self) -> None:
        """SIGKILL the server and every process it started (uvicorn's workers)."""
        from bench_synth import _tree

        for pid in _tree(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class Client:
    """One client's keep-alive HTTP/1.1 connection (the standard library's http.client:
    a platform's client is not Python, and the load generator shares the server's two
    cores, so it should cost little: httpx took about 1 ms of CPU a request, this about
    a third of it). A lost connection is opened again on the next request."""

    def __init__(self, port: int, secret: str):
        self.port, self.conn = port, None
        self.headers = {"Authorization": f"Bearer {secret}",
                        "Content-Type": "application/json"}

    def post(self, path: str, body: bytes, idem: str | None) -> tuple[int, dict, bool]:
        """(status, answer JSON, replayed); OSError (http.client's errors included) when
        the server did not answer."""
        import http.client

        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = dict(self.headers, **({"Idempotency-Key": idem} if idem else {}))
        try:
            self.conn.request("POST", path, body, headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise OSError(str(exc)) from None
        return (resp.status, json.loads(data),
                resp.getheader("idempotent-replayed") == "true")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def send_all(reqs: list[dict], port: int, secret: str, clients: int,
             kill_after: int | None = None, server: Server | None = None) -> list[dict]:
    """Send every request from ``clients`` threads; each result: status, answer JSON,
    latency (s). With ``kill_after``, the server is killed once that many answers came
    and started again; requests without an answer are sent again under their key
    (the platform's retry), those without a key are then left unanswered (status 0)."""
    results: list[dict | None] = [None] * len(reqs)
    todo: queue.Queue = queue.Queue()
    for i in range(len(reqs)):
        todo.put(i)
    answered = [0]
    lock = threading.Lock()
    down = threading.Event()
    up = threading.Event()
    up.set()

    def client():
        conn = Client(port, secret)
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                r = reqs[i]
                body = json.dumps(r["body"]).encode()
                while r["of"] is not None and results[r["of"]] is None:
                    time.sleep(0.002)            # a reversal follows its original's answer
                path = "/v1/reversal" if r["kind"] == "reversal" else "/v1/settlement"
                while True:
                    up.wait()
                    t = time.perf_counter()
                    try:
                        status, answer, replayed = conn.post(path, body, r["idem"])
                    except OSError:
                        if r["idem"] is None:        # no key: a retry may not be safe to
                            results[i] = {"status": 0, "answer": None, "latency": None}
                            break                    # tell apart; counted unanswered
                        time.sleep(0.05)
                        continue
                    results[i] = {"status": status, "answer": answer,
                                  "latency": time.perf_counter() - t, "replayed": replayed}
                    break
                with lock:
                    answered[0] += 1
                    if kill_after and answered[0] == kill_after and not down.is_set():
                        down.set()
                        up.clear()
                        server.kill()
                        server.start()
                        up.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def check(reqs, results, url: str, city: Path, product: str, work: Path) -> dict:
    """The checks of the module docstring; a dict of counts (all zero when right)."""
    from puhui.claims import ledger
    from puhui.claims.direct import direct_payout
    from puhui.claims.reverse import reverse_payout
    from puhui.products.model import load_product, product_path

    con = ledger.connect(url, must_exist=True)
    pid = load_product(product_path(product)).id
    decided = {}
    for (setl_id,) in con.execute("SELECT DISTINCT setl_id FROM decisions"):
        decided[setl_id] = sum(r[4] for r in ledger.decisions_of(con, setl_id, pid))
    n_benefits = {sid: n for sid, n in con.execute(
        "SELECT setl_id, COUNT(*) FROM decisions GROUP BY setl_id")}
    bad = {"acknowledged_missing": 0, "acknowledged_other_payout": 0,
           "half_written": 0, "replay_differs": 0, "sequential_differs": 0,
           "double_entries": 0, "net_not_decided": 0, "conflict_unexpected": 0}
    first_answer = {}
    paid_direct = {sid: int(v) for sid, v in con.execute(
        "SELECT applies_to, SUM(payout_fen) FROM payments WHERE batch_id = ?"
        " GROUP BY applies_to", (ledger.direct_batch(pid),))}
    touched = {p for (p,) in con.execute("SELECT DISTINCT psn_no FROM reversals")}
    reversed_ids = set(ledger.known_reversals(con))
    # a 409 is right only for a repeat, without a key, of a settlement reversed since
    bad["conflict_unexpected"] = sum(
        1 for r, res in zip(reqs, results) if res and res["status"] == 409
        and not (r["kind"] == "settlement" and r["idem"] is None
                 and r["body"]["setl_id"] in reversed_ids))
    for r, res in zip(reqs, results):
        if res is None or res["status"] not in (200, 201) or \
                res["answer"].get("recorded") is False:      # no policy covers it: not kept
            continue
        sid = r["body"]["setl_id"]
        if r["kind"] == "reversal":
            bad["acknowledged_missing"] += _reversal_missing(con, r, res)
        elif sid not in decided:
            bad["acknowledged_missing"] += 1
        elif res["status"] == 201 or r["body"]["psn_no"] not in touched:
            told = round(paid_direct.get(sid, 0) / 100, 2) if res["status"] == 201 else \
                round(decided[sid] / 100, 2)
            bad["acknowledged_other_payout"] += int(told != res["answer"]["total_payout"])
        if r["repeat_of"] is None and r["idem"]:
            first_answer[r["idem"]] = res["answer"]
    for r, res in zip(reqs, results):
        # (a first sent without an answer, or answered 503, has none to compare)
        if r["repeat_of"] and r["idem"] and r["idem"] in first_answer and res and \
                res["status"] in (200, 201):
            if json.dumps(res["answer"], sort_keys=True) != json.dumps(
                    first_answer.get(r["idem"]), sort_keys=True):
                bad["replay_differs"] += 1
    p = load_product(product_path(product))
    bad["half_written"] = sum(1 for n in n_benefits.values() if n != len(p.benefits))
    bad["double_entries"] = con.execute(
        "SELECT COUNT(*) FROM (SELECT applies_to, benefit FROM payments WHERE"
        " (kind = 'pay' AND batch_id = ?) OR kind = 'reverse'"
        " GROUP BY applies_to, benefit, kind HAVING COUNT(*) > 1) AS d",
        (ledger.direct_batch(pid),)).fetchone()[0]
    # every settlement and benefit: its net entries are its current decision's payout
    bad["net_not_decided"] = con.execute(
        "SELECT COUNT(*) FROM decisions d WHERE d.payout_fen != (SELECT COALESCE("
        "SUM(e.payout_fen), 0) FROM payments e WHERE e.applies_to = d.setl_id AND"
        " e.benefit = d.benefit)").fetchone()[0]
    # the sequential replay, in the order the ledger committed the payouts and reversals
    order = [(c, json.loads(d)["setl_id"]) for c, d in con.execute(
        "SELECT command, detail FROM audit WHERE command IN ('claims direct',"
        " 'claims reverse') ORDER BY id")]
    by_id = {r["body"]["setl_id"]: r["body"] for r in reqs}
    ref = f"sqlite:///{work / 'replay.db'}"
    _run("ledger", "load", "--data", str(city), "--ledger", ref)
    for command, sid in order:
        if command == "claims reverse":
            reverse_payout(p, ref, by_id[sid])
        else:
            direct_payout(p, ref, by_id[sid])
    rc = ledger.connect(ref, must_exist=True)
    q_net = ("SELECT psn_no, SUM(payout_fen) FROM payments GROUP BY psn_no"
             " HAVING SUM(payout_fen) != 0 ORDER BY psn_no")
    q_acc = "SELECT policy_no, accumulator, used_fen FROM accumulators ORDER BY 1, 2"
    q_pay = ("SELECT applies_to, benefit, SUM(payout_fen) FROM payments GROUP BY 1, 2"
             " ORDER BY 1, 2")
    for q in (q_net, q_acc, q_pay):
        a = [tuple(int(v) if isinstance(v, int) or hasattr(v, "as_integer_ratio") and
                   not isinstance(v, float) else v for v in row) for row in con.execute(q)]
        b = [tuple(row) for row in rc.execute(q)]
        bad["sequential_differs"] += int(a != b)
    bad["decided"] = len(decided)
    bad["reversed"] = sum(1 for c, _ in order if c == "claims reverse")
    bad["replayed_in_order"] = len(order)
    return bad


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, with that of their reaped children) of processes, from
    /proc: where a request's cost goes (the client, the server, the database) on a
    machine whose cores they share."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])     # utime stime cutime cstime
    return total / tick


def postgres_pids(pg) -> list[int]:
    """The throwaway PostgreSQL server's processes (postmaster and its children)."""
    from bench_synth import _tree

    pidfile = next(Path(pg.directory).rglob("postmaster.pid"), None) if pg else None
    return _tree(int(pidfile.read_text().split()[0])) if pidfile else []


def cpu_by_process(server, pg) -> dict[str, float]:
    from bench_synth import _tree

    t = os.times()
    return {"client": t.user + t.system, "server": cpu_seconds(_tree(server.proc.pid)),
            "database": cpu_seconds(postgres_pids(pg))}


def _reversal_missing(con, r: dict, res: dict) -> int:
    """1 if an acknowledged reversal is not recorded, or its answer lists other entries
    than its batch holds."""
    from puhui.claims import ledger
    from puhui.claims.reverse import batch_of

    rid = r["body"]["setl_id"]
    done = ledger.reversal_by_id(con, rid)
    if done is None or done[0] != r["body"]["refund_of"]:
        return 1
    held = [(s, a, b, round(f / 100, 2), k) for s, a, b, f, k in
            ledger.reversal_entries(con, rid, batch_of(rid), True)]
    told = [(e["setl_id"], e["applies_to"], e["benefit"], e["payout_amt"], e["kind"])
            for e in res["answer"]["entries"]]
    return int(held != told)


def summarise(results, seconds: float) -> dict:
    lat = sorted(r["latency"] for r in results if r and r["latency"] is not None)
    by = {}
    for r in results:
        k = "unanswered" if r is None or r["status"] == 0 else str(r["status"])
        by[k] = by.get(k, 0) + 1

    def q(f):
        return round(1000 * lat[min(len(lat) - 1, int(f * len(lat)))], 1) if lat else None

    return {"requests": len(results), "seconds": round(seconds, 2),
            "per_second": round(len(lat) / seconds, 1), "p50_ms": q(0.50), "p99_ms": q(0.99),
            "max_ms": round(1000 * lat[-1], 1) if lat else None, "by_status": by}


def main(argv=None) -> dict:
    from bench_synth import machine

    from puhui.tempdb import TempPostgres, free_port

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--persons", type=int, default=2000, help="people of the city")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kill-after", type=int, default=None,
                    help="SIGKILL the server after this many answers, then start it again")
    ap.add_argument("--product", default="huhuibao-2025")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--fast-postgres", action="store_true",
                    help="PostgreSQL without fsync (the tests' server); default: durable")
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="puhui-load-") as tmp:
        work = Path(tmp)
        city = make_city(args.persons, args.seed, work / "city")
        pg = TempPostgres(durable=not args.fast_postgres).start() \
            if args.backend == "postgres" else None
        try:
            url = pg.url if pg else f"sqlite:///{work / 'ledger.db'}"
            _run("ledger", "load", "--data", str(city), "--ledger", url)
            secret = _run("keys", "create", "--ledger", url, "--scope", "settle",
                          "--name", "load-test").stdout.strip()
            people = insured(city, args.product)
            # few people, so the same person is settled by several clients at once
            reqs = workload(people[:max(16, len(people) // 20)], args.requests, args.seed)
            server = Server(args.product, url, free_port(), work / "server.log",
                            args.workers)
            server.start()
            cpu0 = cpu_by_process(server, pg)
            t = time.perf_counter()
            results = send_all(reqs, server.port, secret, args.clients, args.kill_after,
                               server)
            seconds = time.perf_counter() - t
            cpu1 = cpu_by_process(server, pg)
            server.stop()
            out = summarise(results, seconds) | {"backend": args.backend,
                                                 "clients": args.clients,
                                                 "workers": args.workers,
                                                 "durable": not args.fast_postgres,
                                                 "killed_after": args.kill_after}
            # CPU milliseconds a request, by process (a kill loses the killed server's)
            out["cpu_ms_per_request"] = {k: round(1000 * (cpu1[k] - cpu0[k]) / len(reqs), 3)
                                         for k in cpu0}
            out["checks"] = check(reqs, results, url, city, args.product, work)
        finally:
            if pg:
                pg.stop()
    print(json.dumps(out, indent=1), flush=True)
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
