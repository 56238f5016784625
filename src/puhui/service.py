"""``puhui serve``: direct settlement over HTTP (issue 20, point 2).

The national platform settles the basic tier at the counter and, in the same moment,
asks what the product pays: ``POST /v1/pre-settlement`` answers without recording;
``POST /v1/settlement`` adjudicates and records (the per-settlement face of the one
benefit engine, :mod:`puhui.claims.direct`, against the ledger); ``POST /v1/reversal``
reverses a decided settlement (:mod:`puhui.claims.reverse`: the policy year adjudicated
again, the differences written). Reads:
``GET /v1/settlements/{setl_id}`` (its explanation of benefit) and
``GET /v1/persons/{psn_no}/accumulators``; ``GET /healthz``. docs/service.md.

- **Keys**: every ``/v1`` request carries ``Authorization: Bearer <key>`` (or
  ``X-API-Key``), a key made by ``puhui keys create`` and kept in the ledger as its
  SHA-256; scope ``settle`` may do everything, ``read`` only the reads.
- **Idempotency**: a settlement is decided once per ``setl_id`` whatever is sent; with an
  ``Idempotency-Key`` header the first answer is kept in the transaction that recorded
  it and returned again (``Idempotent-Replayed: true``) for the same body, and a
  different body under a used key is ``409``. An answer is sent only after its
  transaction committed: an acknowledged settlement is in the ledger.
- **Audit**: every ``/v1`` request, answered or refused, is in the ledger's audit log
  (the key's name, method and path, the setl_id, the status): one row a request, but
  failed authentications (``401``) one row per endpoint, reason and minute with their
  count (:class:`FailedAuthTally`: a client without a key cannot flood the log).
- **Privacy**: the settlement guard (:func:`puhui.claims.direct.guard_settlement`) on
  every body and the token rule on ids in paths; no message echoes a value.
- **Errors** are ``application/problem+json`` (RFC 9457) that say what to fix: 400 bad
  input, 401/403 keys, 404, 409 conflicts, 413 a body over 64 KB, 422 a reversal that
  cannot be applied to what the ledger holds; never a traceback.
"""

import hashlib
import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from puhui.claims import ledger
from puhui.claims.direct import (REQUIRED, answer_of, checked_settlement, decide,
                                 decide_reads, held_note, in_product_order, insurer_note,
                                 settlement_json,
                                 settlement_locks)
from puhui.claims.reverse import apply_reversal, checked_reversal, reversal_locks
from puhui.errors import Conflict, InputError, Unprocessable
from puhui.fund import privacy
from puhui.products.model import Product

#: The largest request body taken (a settlement with hundreds of lines is a few KB).
MAX_BODY_BYTES = 64 * 1024
#: An Idempotency-Key: printable ASCII, at most this long.
MAX_IDEMPOTENCY_KEY = 200
PROBLEM = "application/problem+json"


class Problem(Exception):
    """An HTTP problem: status, title, what to do."""

    def __init__(self, status: int, title: str, detail: str):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class _Connections:
    """One ledger connection per server thread (sqlite3 connections stay in their
    thread; a PostgreSQL connection is not shared by two requests at once)."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def get(self):
        con = getattr(self._local, "con", None)
        if con is not None and getattr(con, "closed", False):
            # lost (the database restarted, or cut the session): a new one, not this
            # thread's dead connection for every later request (drop() in the event
            # loop's thread cannot reach this thread's connection)
            self.drop()
            con = None
        if con is None:
            try:
                con = self._local.con = ledger.connect(self.url, must_exist=True)
            except InputError as exc:
                # the ledger was there when the server started: not the client's fault
                # (a 400 tells a platform not to send it again), and the ledger's
                # address is not the client's business
                import logging

                logging.getLogger("puhui.service").warning("%s", exc)
                raise Problem(503, "ledger unavailable", "the ledger does not answer (it may "
                              "be restarting); send the request again, a settlement with "
                              "the same Idempotency-Key: it is decided once") from None
        return con

    def drop(self) -> None:
        """Forget this thread's connection (after an error that may have broken it)."""
        con = getattr(self._local, "con", None)
        self._local.con = None
        if con is not None:
            try:
                con.close()
            except Exception:  # noqa: BLE001 - a broken connection closes as it can
                pass


class FailedAuthTally:
    """Failed authentications (``401``) audited in aggregate: one audit row per
    (endpoint, reason, minute) with the count of such requests in that minute and the
    first and last of them. A minute's rows are written when a failure of a later
    minute arrives, and the open minute's at shutdown (:meth:`flush`), so a client
    without a key cannot flood the append-only log yet every failure is counted.
    ``write(rows)`` appends rows (dicts) to the ledger; ``clock()`` gives epoch
    seconds (injectable for tests). Thread-safe: requests run in worker threads."""

    def __init__(self, write, clock=time.time):
        self._write, self._clock = write, clock
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, int], dict] = {}

    def count(self, what: str, reason: str) -> None:
        """One failed authentication of ``what`` (e.g. ``POST /v1/settlement``) for
        ``reason`` (the problem's title), now; earlier minutes' rows written."""
        with self._lock:        # the clock read under the lock: a minute once written
            t = self._clock()   # (a later one counted) gets no second row
            minute = int(t // 60)
            row = self._open.setdefault((what, reason, minute), {
                "what": what, "reason": reason, "count": 0, "first": t, "last": t,
                "minute": _utc(minute * 60)[:16] + "Z"})
            row["count"] += 1
            row["first"], row["last"] = min(row["first"], t), max(row["last"], t)
        self.flush(before=minute)

    def flush(self, before: int | None = None) -> int:
        """Write the rows of the minutes before ``before`` (every row if None): the
        number of rows written. Rows that could not be written are kept (counted on)
        for the next flush, and the error logged."""
        with self._lock:
            keys = [k for k in self._open if before is None or k[2] < before]
            rows = [self._open.pop(k) for k in keys]
        if not rows:
            return 0
        try:
            self._write([r | {"first": _utc(r["first"]), "last": _utc(r["last"])}
                         for r in rows])
        except Exception:  # noqa: BLE001 - kept for the next flush, never lost silently
            logging.getLogger("puhui.service").exception(
                "audit of %d failed authentications not written yet",
                sum(r["count"] for r in rows))
            with self._lock:
                for k, r in zip(keys, rows):
                    kept = self._open.setdefault(k, r)
                    if kept is not r:           # the same minute counted on meanwhile
                        kept["count"] += r["count"]
                        kept["first"] = min(kept["first"], r["first"])
                        kept["last"] = max(kept["last"], r["last"])
            return 0
        return len(rows)

    def pending(self) -> int:
        """Failed authentications counted and not yet written."""
        with self._lock:
            return sum(r["count"] for r in self._open.values())


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds")


def _settlement_schema() -> dict:
    """The request body's JSON schema for the OpenAPI document."""
    from puhui.claims.direct import AMOUNTS

    props: dict[str, Any] = {k: {"type": "string"} for k in
                             ("setl_id", "psn_no", "med_type", "insutype")}
    props |= {k: {"type": "number", "description": "yuan, two decimals"} for k in AMOUNTS}
    props["setl_time"] = {"type": "string", "format": "date"}
    props["hosp_lv"] = {"type": "integer", "enum": [1, 2, 3]}
    props["lines"] = {"type": "array", "items": {"type": "object", "properties": {
        "hilist_code": {"type": "string"}, "list_class": {"type": "string"},
        "amount": {"type": "number"}}, "required": ["hilist_code", "amount"]}}
    return {"type": "object", "required": list(REQUIRED), "properties": props}


def _body_spec() -> dict:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _settlement_schema()}}},
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY}}]}


class Service:
    """What the endpoints do, without HTTP: (status, JSON answer) or :class:`Problem`.
    Runs in the server's worker threads (blocking database work)."""

    def __init__(self, product: Product, url: str, clock=time.time):
        self.product, self.url = product, url
        self.connections = _Connections(url)
        self.failed_auth = FailedAuthTally(self.audit_failed_auth, clock)

    # keys and audit -------------------------------------------------------------
    def key_of(self, secret: str | None) -> tuple[str, str, str]:
        """(key_id, name, scope) of the request's key."""
        if not secret:
            raise Problem(401, "no API key", "send the key as 'Authorization: Bearer KEY' "
                                             "(keys are made with 'puhui keys create')")
        found = ledger.api_key(self.connections.get(), secret)
        if found is None:
            raise Problem(401, "unknown API key", "the key is not known or was revoked; "
                                                  "ask for a key ('puhui keys create')")
        return found

    def audit(self, who: str, what: str, status: int, setl_id: str | None = None,
              con=None, key_id: str | None = None) -> None:
        """The request's audit row: in the caller's transaction (``con``), or in its own
        (which locks nothing on PostgreSQL: appending to the log waits for no payout).
        ``who`` is the key's name, ``key_id`` (in the detail) the key itself: two keys
        may share a name (review 20)."""
        if con is not None:
            ledger.audit(con, f"api {what}", who=who, status=status,
                         **({"setl_id": setl_id} if setl_id else {}),
                         **({"key_id": key_id} if key_id else {}))
            return
        con = self.connections.get()
        with ledger.unit_of_work(con, locks=()):
            self.audit(who, what, status, setl_id, con=con, key_id=key_id)

    def audit_failed_auth(self, rows: list[dict]) -> None:
        """Rows of :class:`FailedAuthTally` (a minute's failed authentications of an
        endpoint for a reason, counted), in one transaction of their own."""
        con = self.connections.get()
        with ledger.unit_of_work(con, locks=()):
            for r in rows:
                ledger.audit(con, f"api {r['what']}", who="anonymous", status=401,
                             reason=r["reason"], count=r["count"], minute=r["minute"],
                             first=r["first"], last=r["last"])

    # endpoints ------------------------------------------------------------------
    def pre_settlement(self, raw: dict) -> tuple[int, dict]:
        s, lines = checked_settlement(raw)
        con = self.connections.get()
        with ledger.read_only(con):
            return 200, decide(con, self.product, s, lines, record=False)

    def settlement(self, raw: dict, key_id: str, idem_key: str | None,
                   who: str = "anonymous") -> tuple[int, dict, bool]:
        """(status, answer, replayed); the request's audit row written in the same
        transaction as the answer."""
        s, lines = checked_settlement(raw)
        idem_key = per_product(self.product.id, idem_key)
        # the request's meaning, not its bytes: a retry that orders its keys or spaces its
        # JSON otherwise is the same request (review 20)
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode()).hexdigest()
        con = self.connections.get()
        locks = settlement_locks(s) + ((f"idem:{key_id}:{idem_key}",) if idem_key else ()) \
            + ledger.group_locks(con, self.product)
        reads = ([ledger.idempotent_answer_query(key_id, idem_key)] if idem_key else []) + \
            decide_reads(self.product, s)
        with ledger.unit_of_work(con, locks=locks, reads=reads):
            if idem_key:
                before = ledger.idempotent_answer(con, key_id, idem_key)
                if before is not None:
                    endpoint, body_sha, status, response = before
                    if (endpoint, body_sha) != ("settlement", digest):
                        raise Conflict("this Idempotency-Key was used for another request "
                                       "(another body or endpoint); a new request takes a "
                                       "new key")
                    self.audit(who, "POST /v1/settlement", status, s["setl_id"], con, key_id)
                    return status, json.loads(response), True
            answer = decide(con, self.product, s, lines, record=True)
            status = 201 if answer.get("recorded", True) and \
                not answer.get("already_decided") else 200
            # the request's audit row right after the payout's: one statement (ledger_pg)
            self.audit(who, "POST /v1/settlement", status, s["setl_id"], con, key_id)
            if idem_key:
                ledger.record_idempotent_answer(con, key_id, idem_key, "settlement", digest,
                                                status, json.dumps(answer, sort_keys=True))
        return status, answer, False

    def reversal(self, raw: dict, key_id: str, idem_key: str | None,
                 who: str = "anonymous") -> tuple[int, dict, bool]:
        """(status, answer, replayed) of a reversal (:mod:`puhui.claims.reverse`): 201
        applied now, 200 applied before (here or by a batch); under an Idempotency-Key
        the first answer again. The audit row is written in the answer's transaction."""
        r = checked_reversal(raw)
        idem_key = per_product(self.product.id, idem_key)
        digest = _meaning(raw)
        con = self.connections.get()
        locks = reversal_locks(r) + ((f"idem:{key_id}:{idem_key}",) if idem_key else ()) \
            + ledger.group_locks(con, self.product)
        with ledger.unit_of_work(con, locks=locks):
            if idem_key:
                before = _replayed(con, key_id, idem_key, "reversal", digest)
                if before is not None:
                    self.audit(who, "POST /v1/reversal", before[0], r["setl_id"], con, key_id)
                    return before[0], before[1], True
            answer, new = apply_reversal(con, self.product, r)
            status = 201 if new else 200
            if idem_key:
                ledger.record_idempotent_answer(con, key_id, idem_key, "reversal", digest,
                                                status, json.dumps(answer, sort_keys=True))
            self.audit(who, "POST /v1/reversal", status, r["setl_id"], con, key_id)
        return status, answer, False

    def settlement_eob(self, setl_id: str) -> tuple[int, dict]:
        _token(setl_id, "setl_id")
        con = self.connections.get()
        done = in_product_order(self.product, ledger.decisions_of(con, setl_id,
                                                                       self.product.id))
        hold = ledger.hold_of(con, setl_id)
        note = held_note(hold[1] if hold is not None and hold[4] is None else None)
        if not done and not note:
            raise Problem(404, "no such settlement", f"settlement {setl_id} has not been "
                                                     f"decided by this ledger")
        return 200, answer_of(setl_id, done) | note | insurer_note(con, self.product, setl_id)

    def accumulators(self, psn_no: str) -> tuple[int, dict]:
        _token(psn_no, "psn_no")
        con = self.connections.get()
        pols = ledger.policies_of(con, psn_no, self.product.id)
        if not pols:
            raise Problem(404, "no policy", f"the person has no policy of {self.product.id}")
        out = []
        for p in sorted(pols, key=lambda p: p["start_date"]):
            used = ledger.accumulators_of(con, p["policy_no"])
            out.append({"policy_no": p["policy_no"], "start_date": p["start_date"],
                        "end_date": p["end_date"],
                        "used_amt": {k: v / 100 for k, v in sorted(used.items())}})
        return 200, {"psn_no": psn_no, "product_id": self.product.id, "policies": out}

    def health(self) -> tuple[int, dict]:
        con = self.connections.get()
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                              ).fetchone()[0]
        return 200, {"status": "ok", "product_id": self.product.id,
                     "ledger": "postgresql" if ledger.is_postgres(self.url) else "sqlite",
                     "schema_version": version}


def _meaning(raw: dict) -> str:
    """SHA-256 of a request body's meaning (its fields and values, not its bytes)."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def per_product(product_id: str, idem_key: str | None) -> str | None:
    """An Idempotency-Key as the ledger keeps it: under the product served (review s22:
    one key sent to two products' services on one ledger was answered by the second
    with the first's answer, and the second never decided nor paid). A product id holds
    no space, so the first space ends it.

    >>> per_product("huhuibao-2025", "k-1")
    'huhuibao-2025 k-1'
    """
    return None if idem_key is None else f"{product_id} {idem_key}"


def _replayed(con, key_id: str, idem_key: str, endpoint: str, digest: str
              ) -> tuple[int, dict] | None:
    """(status, answer) kept under an Idempotency-Key for this request; a 409 if the key
    was used for another request; None if unused."""
    before = ledger.idempotent_answer(con, key_id, idem_key)
    if before is None:
        return None
    used_for, body_sha, status, response = before
    if (used_for, body_sha) != (endpoint, digest):
        raise Conflict("this Idempotency-Key was used for another request (another body "
                       "or endpoint); a new request takes a new key")
    return status, json.loads(response)


def _ledger_unavailable(exc: BaseException) -> bool:
    """An error of the ledger's database connection or of a lock it could not get in
    time (the request may be sent again), not a bug of puhui."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)


def _shown_id(value) -> str | None:
    """A settlement id the audit may keep: a pseudonymous token, else nothing."""
    return value if isinstance(value, str) and len(value) <= 64 and privacy.is_token(value) \
        and privacy.check_value(value) is None else None


def _token(value: str, what: str) -> None:
    if not privacy.is_token(value) or len(value) > 64:
        raise InputError(f"{what} in the path is not a pseudonymous token (ASCII letters, "
                         f"digits and signs, at most 64); the value is not shown")
    rule = privacy.check_value(value)
    if rule is not None:        # an ID or phone number is ASCII too: never echoed or kept
        raise InputError(f"{what} in the path looks like personal data ({rule}); send the "
                         f"pseudonymous id of the anonymised data (the value is not shown)")


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or not value.isascii() or \
            not value.isprintable():
        raise InputError(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII "
                         f"characters (a UUID is usual)")
    rule = privacy.check_value(value)
    if rule is not None:        # the key is kept in the ledger and named in a 409
        raise InputError(f"Idempotency-Key looks like personal data ({rule}); use a random "
                         f"key (a UUID) per request (the value is not shown)")
    return value


def create_app(product: Product, url: str, clock=time.time):
    """The ASGI application (FastAPI) serving ``product`` against the ledger at ``url``;
    ``clock`` (epoch seconds) times the failed authentications' audit (tests give one)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    svc = Service(product, url, clock)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(svc.failed_auth.flush)   # the open minute's, counted

    app = _direct_routes_class()(title="puhui direct settlement", version="1",
                                 description=__doc__.split("\n\n")[1], lifespan=lifespan)
    app.state.service = svc

    def problem(status: int, title: str, detail: str, headers=None) -> JSONResponse:
        return JSONResponse({"type": "about:blank", "title": title, "status": status,
                             "detail": detail}, status_code=status, media_type=PROBLEM,
                            headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request, exc):          # 404 of an unknown path, 405, ...
        path = request.url.path                    # shown only if it holds nothing personal
        shown = path if len(path) <= 200 and privacy.is_token(path) and \
            privacy.check_value(path) is None else "(this path, not shown)"
        return problem(exc.status_code, str(exc.detail), f"{request.method} {shown}: see "
                       f"/docs for the endpoints")

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request, exc):
        return problem(400, "bad request", "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()))

    async def handle(request: Request, what: str, need: str, work, setl_id=None,
                     body: bool = False):
        """Key, body, work, audit, problem: one request. The body's bytes are read here
        (up to the limit); the key's check and ``work(key_id, note, data)`` run in one
        call of a worker thread (blocking database work; one hop a request). ``work``
        may name the settlement in ``note["setl_id"]`` for the audit."""
        who, status, note = "anonymous", 500, {"setl_id": setl_id, "audited": False}
        try:
            secret = _secret(request)
            if not secret:
                svc.key_of(None)                      # 401, before any body is read
            data = await body_of(request) if body else None

            def in_thread():
                key_id, note["who"], scope = svc.key_of(secret)
                note["key_id"] = key_id
                if need == "settle" and scope != "settle":
                    raise Problem(403, "read-only key", "this key may only read; settling "
                                                        "needs a key of scope settle")
                return work(key_id, note, data)

            status, answer, headers = await run_in_threadpool(in_thread)
            return JSONResponse(answer, status_code=status, headers=headers)
        except Problem as p:
            status, note["reason"] = p.status, p.title
            return problem(p.status, p.title, p.detail)
        except Conflict as exc:
            status = 409
            return problem(409, "conflict", str(exc))
        except Unprocessable as exc:
            status = 422
            return problem(422, "cannot be applied", str(exc))
        except InputError as exc:
            status = 400
            return problem(400, "bad request", str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: the problem says so, nothing kept
            svc.connections.drop()
            if _ledger_unavailable(exc):
                status = 503
                return problem(503, "ledger unavailable", "the ledger did not answer (it "
                               "may be restarting); send the request again, a settlement "
                               "with the same Idempotency-Key: it is decided once",
                               headers={"Retry-After": "1"})
            status = 500
            return problem(500, "internal error", "the request failed inside puhui; "
                           "nothing of it was recorded; the server's log has the cause")
        finally:
            try:
                if status == 401:           # counted, one row per endpoint, reason, minute
                    await run_in_threadpool(svc.failed_auth.count, what, note["reason"])
                elif not (note["audited"] and status < 300):
                    await run_in_threadpool(svc.audit, note.get("who", who), what, status,
                                            note["setl_id"], None, note.get("key_id"))
            except Exception:  # noqa: BLE001 - an audit that cannot be written is logged
                logging.getLogger("puhui.service").exception("audit not written")

    async def body_of(request: Request) -> bytes:
        """The body's bytes, read only up to the limit: a declared or streamed (chunked)
        body over it is refused before it is held in memory."""
        too_large = Problem(413, "body too large", f"a settlement is at most "
                                                   f"{MAX_BODY_BYTES // 1024} KB")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise too_large
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            parts.append(chunk)
        return b"".join(parts)

    def settlement_of(data: bytes, note: dict) -> dict:
        raw = settlement_json(data, "request body")
        note["setl_id"] = _shown_id(raw.get("setl_id"))
        return raw

    @app.post("/v1/pre-settlement", openapi_extra=_body_spec(),
              summary="What the product would pay now; nothing is recorded")
    async def pre_settlement(request: Request):
        def work(key_id, note, data):
            status, answer = svc.pre_settlement(settlement_of(data, note))
            return status, answer, None
        return await handle(request, "POST /v1/pre-settlement", "settle", work, body=True)

    async def recording(request: Request, what: str, record) -> JSONResponse:
        """A request that records (a settlement, a reversal): ``record(raw, key_id,
        idem, who)`` gives (status, answer, replayed) and writes the audit row itself."""
        def work(key_id, note, data):
            raw = settlement_of(data, note)
            idem = _idempotency_key_of(request)
            status, answer, replayed = record(raw, key_id, idem, note["who"])
            note["audited"] = True
            return status, answer, {"Idempotent-Replayed": "true"} if replayed else None
        return await handle(request, what, "settle", work, body=True)

    @app.post("/v1/settlement", openapi_extra=_body_spec(),
              summary="Adjudicate and record a settlement (idempotent on setl_id)")
    async def settlement(request: Request):
        return await recording(request, "POST /v1/settlement", svc.settlement)

    @app.post("/v1/reversal", openapi_extra=_reversal_spec(),
              summary="Reverse a decided settlement; the policy year adjudicated again")
    async def reversal(request: Request):
        return await recording(request, "POST /v1/reversal", svc.reversal)

    app.direct = {"/v1/settlement": settlement, "/v1/reversal": reversal}

    @app.get("/v1/settlements/{setl_id}", summary="A decided settlement's explanation of "
                                                  "benefit")
    async def settlement_eob(request: Request, setl_id: str):
        def work(key_id, note, data):
            status, answer = svc.settlement_eob(setl_id)
            return status, answer, None
        return await handle(request, "GET /v1/settlements", "read", work,
                            setl_id=_shown_id(setl_id))

    @app.get("/v1/persons/{psn_no}/accumulators", summary="A person's policies and what "
                                                          "their deductibles and limits used")
    async def accumulators(request: Request, psn_no: str):
        def work(key_id, note, data):
            status, answer = svc.accumulators(psn_no)
            return status, answer, None
        return await handle(request, "GET /v1/persons/accumulators", "read", work)

    @app.get("/healthz", summary="The service and its ledger answer")
    async def healthz():
        try:
            status, answer = await run_in_threadpool(svc.health)
        except Exception:  # noqa: BLE001 - unhealthy: say so, no traceback
            svc.connections.drop()
            return problem(503, "ledger unavailable", "the ledger does not answer")
        return JSONResponse(answer, status_code=status)

    return app


def _direct_routes_class():
    """The service's application class (FastAPI is imported only when a service is
    made)."""
    from fastapi import FastAPI
    from starlette.requests import Request

    class DirectRoutes(FastAPI):
        """The FastAPI application, whose ``POST`` endpoints in :attr:`direct` (path ->
        endpoint) are called straight from the server, not through Starlette's middleware
        and router and FastAPI's request handler: those endpoints answer every request
        themselves (``handle`` turns every error into a problem) and take the request
        alone, so the layers between did nothing for them but cost about 0.3 ms of CPU a
        request (session 23). Every other request (another method or path, OpenAPI,
        lifespan) goes through FastAPI as before."""

        #: path -> endpoint of the ``POST`` requests called straight
        direct: dict = {}

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                endpoint = self.direct.get(scope["path"])
                if endpoint is not None:
                    scope["app"] = self
                    response = await endpoint(Request(scope, receive))
                    await response(scope, receive, send)
                    return
            await super().__call__(scope, receive, send)

    return DirectRoutes


def _idempotency_key_of(request) -> str | None:
    given = request.headers.getlist("idempotency-key")
    if len(given) > 1:
        raise InputError("Idempotency-Key given more than once; send one")
    return _idempotency_key(given[0] if given else None)


def _reversal_spec() -> dict:
    """The reversal body's JSON schema for the OpenAPI document."""
    from puhui.claims.direct import AMOUNTS
    from puhui.claims.reverse import REQUIRED as REV_REQUIRED

    props: dict[str, Any] = {k: {"type": "string"} for k in
                             ("setl_id", "refund_of", "psn_no", "med_type", "insutype")}
    props |= {k: {"type": "number", "maximum": 0,
                  "description": "yuan, two decimals: the original's negated"} for k in AMOUNTS}
    props["setl_time"] = {"type": "string", "format": "date"}
    props["hosp_lv"] = {"type": "integer", "enum": [1, 2, 3]}
    spec = _body_spec()
    spec["requestBody"]["content"]["application/json"]["schema"] = {
        "type": "object", "required": list(REV_REQUIRED), "properties": props}
    return spec


def _secret(request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def app_from_env():
    """The application of a server process that uvicorn started (``--workers`` above
    one): the product file and ledger from ``PUHUI_SERVE_PRODUCT`` and
    ``PUHUI_SERVE_LEDGER``, set by :func:`serve`."""
    import os
    from pathlib import Path

    from puhui.products.model import load_product

    return create_app(load_product(Path(os.environ["PUHUI_SERVE_PRODUCT"])),
                      os.environ["PUHUI_SERVE_LEDGER"])


def _check_address(host: str, port: int) -> None:
    """Refuse (exit 2, saying why) an address the server could not listen on: uvicorn
    would log its own error and exit 3, which the contract does not know."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
            s.bind(address)
    except OSError as exc:
        raise InputError(f"--host {host} --port {port}: cannot listen there "
                         f"({exc.strerror or exc}); give a free --port, or an address of "
                         f"this machine as --host") from None


def serve(product: Product, url: str, host: str, port: int, workers: int = 1) -> None:
    """Run the service with uvicorn until interrupted; ``workers`` processes (each with
    its own connections; on one port, the kernel spreads the connections)."""
    import os

    import uvicorn

    con = ledger.connect(url, must_exist=True)
    try:
        if not ledger.has_policies(con, product.id):
            raise InputError(f"ledger {ledger.shown_url(url)}: no policy of product "
                             f"{product.id}; load them with 'puhui ledger load --data DIR "
                             f"--ledger URL'")
        ledger.check_co_insurers(con, product)
        if not ledger.api_keys(con):
            raise InputError(f"ledger {ledger.shown_url(url)}: no API key; make one with "
                             f"'puhui keys create --ledger URL --scope settle --name NAME'")
    finally:
        con.close()
    _check_address(host, port)
    import sys

    print(f"puhui serve: {product.id} on http://{host}:{port} (ledger "
          f"{ledger.shown_url(url)}; {workers} process{'es' if workers > 1 else ''}); "
          f"OpenAPI at /docs", file=sys.stderr, flush=True)
    if workers == 1:
        uvicorn.run(create_app(product, url), host=host, port=port, log_level="warning",
                    access_log=False)
        return
    os.environ["PUHUI_SERVE_PRODUCT"] = str(product.path)
    os.environ["PUHUI_SERVE_LEDGER"] = url
    uvicorn.run("puhui.service:app_from_env", factory=True, workers=workers, host=host,
                port=port, log_level="warning", access_log=False)
