"""Loopback load test of the authorization service: many concurrent clients submitting PAS request Bundles to a
real ``priorauth serve`` process over 127.0.0.1.

    .venv/bin/python bench/bench_service.py [--backend sqlite|postgresql] [--workers 1] [--clients 50]
        [--duration 20 | --requests N] [--rate R [--poisson] | --think S] [--warmup 3] [--endpoint submit|health]
        [--ref COMMIT] [--instrument FILE] [--profile FILE [--profile-gil]] [--wait-quiet S] [--json]
    .venv/bin/python bench/bench_service.py --stub      # the load generator alone, against a canned-answer server

See docs/service.md (Performance) for the figures and what they mean. What one run does:

1. a fresh data folder (signing key, payer configuration with ``policy_effective: 2026-12-23``, the SQLite file)
   and, with ``--backend postgresql``, a fresh database ``priorauth_bench_<random>`` (dropped at the end);
2. ``priorauth client add`` registers a provider client; ``priorauth serve --no-seed`` starts as a subprocess
   (``--workers`` worker processes) on a free port, from the working tree or, with ``--ref``, from a commit
   (``git archive`` of ``src/``); the client gets a token from ``POST /oauth/token``;
3. warm-up (``--warmup`` seconds, closed loop, not measured), then the measured phase:
   closed loop (default): ``--clients`` connections, each sends a request, waits for the answer (and
   ``--think`` seconds, exponential, if given), sends the next, for ``--duration`` seconds or ``--requests``
   requests in all;
   open loop (``--rate R``): requests arrive at R per second (evenly spaced, or ``--poisson``) whatever the
   server does; each goes out on an idle keep-alive connection (``--clients`` are opened up front, more up to
   ``--max-connections``) and its latency runs from its scheduled arrival, so queueing in front of a slow server
   is counted (no coordinated omission);
4. the figures: successful submissions per second, latency percentiles, errors by status, the CPU time per
   request of the server processes, of PostgreSQL's processes and of this load generator, and how busy the
   machine was with other work meanwhile (the figures are only comparable when that is near 0);
5. the check: the cases, submissions and determinations in the store equal the successful submissions (warm-up
   included; requests left unanswered may or may not have been stored), and the audit chain verifies.

Every submission is one of the ``examples/fhir`` Bundles in turn, re-serialized once with a placeholder in
``Bundle.identifier.value``; a unique identifier of fixed width is spliced into the pre-built request bytes per
request. The load generator is one asyncio process (uvloop when installed) speaking raw HTTP/1.1 with keep-alive;
``--stub`` measures its own ceiling and CPU cost per request against a canned-answer server.

Where the time goes:
``--instrument FILE`` runs the server (one worker) through a wrapper that times the service's functions (wall
time and the calling thread's CPU time), every SQL statement, COMMIT, the connection pool, the audit_head row
lock and each HTTP request inside the app, for the measured phase only, and prints them per request.
``--profile FILE`` samples the server with py-spy (``pip install py-spy``) during the measured phase, writes the
collapsed stacks (open them in https://speedscope.app) and prints where the time goes per request, by stage of
the request (the service's functions) and by library. ``--profile-gil`` samples only the thread holding the GIL,
which is the server's CPU time spent in Python.
The ``--x-...`` options try changes on the server process by monkeypatching at start-up (threadpool size, GIL
switch interval, the connection pool); the service's code is not changed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
POLICY_EFFECTIVE = "2026-12-23"
PLACEHOLDER = "@@BENCH-IDENTIFIER@@"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- HTTP/1.1 keep-alive client over asyncio streams ---------------------------------------------------------------

class HttpError(Exception):
    pass


class Conn:
    """One keep-alive connection; ``request`` sends pre-built request bytes and reads one response."""

    __slots__ = ("host", "port", "reader", "writer", "used")

    # uvicorn closes a keep-alive connection idle for 5 s (--timeout-keep-alive); a request written just as it
    # does would be lost, so a connection idle for longer than this is replaced before it is used
    MAX_IDLE = 3.0

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.used = 0.0

    async def open(self) -> "Conn":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        now = time.monotonic()
        if self.writer is not None and now - self.used > self.MAX_IDLE:
            self.close()
        if self.writer is None:
            await self.open()
        self.used = now
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > 65536:
            await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        try:
            status = int(head[9:12])
        except ValueError:
            raise HttpError(f"not an HTTP response: {head[:40]!r}") from None
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.index(b"\r\n", i + 2)
            body = await self.reader.readexactly(int(lower[i + 17:j]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size + 2))
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body


class Requests:
    """Pre-built request bytes: for ``submit``, each example Bundle with a fixed-width unique identifier value
    spliced in (``run_id`` + sequence number); for ``health``, one GET."""

    def __init__(self, endpoint: str, files: list[str], host: str, port: int, token: str, run_id: str):
        self.endpoint = endpoint
        self.run_id = run_id
        self.parts: list[tuple[bytes, bytes]] = []
        if endpoint == "health":
            self.health = f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
            return
        for f in files:
            bundle = json.loads(Path(f).read_text(encoding="utf-8"))
            bundle["identifier"]["value"] = PLACEHOLDER
            body = json.dumps(bundle, indent=2, ensure_ascii=False).encode("utf-8")
            pre, post = body.split(PLACEHOLDER.encode())
            length = len(pre) + len(self.identifier(0)) + len(post)
            head = (f"POST /fhir/Claim/$submit HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\n"
                    f"Accept: application/fhir+json\r\nContent-Length: {length}\r\n\r\n").encode()
            self.parts.append((head + pre, post))
        self.sizes = [len(p) + len(q) for p, q in self.parts]

    def identifier(self, seq: int) -> str:
        return f"{self.run_id}-{seq:09d}"

    def build(self, seq: int) -> bytes:
        if self.endpoint == "health":
            return self.health
        pre, post = self.parts[seq % len(self.parts)]
        return pre + self.identifier(seq).encode() + post


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)      # seconds, every answered request
    ok_latencies: list[float] = field(default_factory=list)   # seconds, the 2xx ones
    statuses: collections.Counter = field(default_factory=collections.Counter)
    sent: int = 0
    started: float = 0.0
    ended: float = 0.0
    cpu: float = 0.0                                          # this process's CPU seconds over the phase
    connections: int = 0
    late_max: float = 0.0                                     # open loop: how late the generator sent (s)

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if isinstance(s, int) and 200 <= s < 300)


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Load:
    def __init__(self, host: str, port: int, reqs: Requests, timeout: float, expect: int):
        self.host, self.port, self.reqs, self.timeout, self.expect = host, port, reqs, timeout, expect
        self.seq = 0
        self.bodies_checked = 0

    def _record(self, ph: Phase, t0: float, t1: float, status) -> None:
        ph.latencies.append(t1 - t0)
        ph.statuses[status] += 1
        if isinstance(status, int) and 200 <= status < 300:
            ph.ok_latencies.append(t1 - t0)

    async def _one(self, ph: Phase, conn: Conn, data: bytes, t0: float) -> bool:
        """Send one request; False when the connection had to be dropped."""
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await conn.request(data)
        except TimeoutError:
            self._record(ph, t0, time.perf_counter(), "timeout")
            conn.close()
            return False
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError) as exc:
            self._record(ph, t0, time.perf_counter(), f"error:{type(exc).__name__}")
            conn.close()
            return False
        self._record(ph, t0, time.perf_counter(), status)
        if status == self.expect and self.bodies_checked < 3 and self.reqs.endpoint == "submit":
            self.bodies_checked += 1
            answer = json.loads(body)
            if answer.get("resourceType") != "Bundle":
                raise HttpError(f"the answer to $submit is not a Bundle: {body[:200]!r}")
        return True

    async def closed(self, name: str, clients: int, duration: float | None, count: int | None,
                     think: float = 0.0) -> Phase:
        ph = Phase(name)
        rng = random.Random(11)
        conns = [await Conn(self.host, self.port).open() for _ in range(clients)]
        ph.connections = clients
        deadline = None
        last = self.seq + count if count else None
        cpu0 = _cpu_self()
        ph.started = time.perf_counter()
        if duration:
            deadline = ph.started + duration

        async def client(conn: Conn) -> None:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if last is not None and self.seq >= last:
                    break
                seq = self.seq
                self.seq += 1
                ph.sent += 1
                data = self.reqs.build(seq)
                if not await self._one(ph, conn, data, time.perf_counter()):
                    await asyncio.sleep(0.01)
                if think:
                    await asyncio.sleep(rng.expovariate(1.0 / think))

        await asyncio.gather(*(client(c) for c in conns))
        ph.ended = time.perf_counter()
        ph.cpu = _cpu_self() - cpu0
        for c in conns:
            c.close()
        return ph

    async def open_loop(self, name: str, rate: float, duration: float, start_conns: int, max_conns: int,
                        poisson: bool, drain_timeout: float) -> Phase:
        ph = Phase(name)
        idle: list[Conn] = [await Conn(self.host, self.port).open() for _ in range(start_conns)]
        n_conns = len(idle)
        waiters: collections.deque[asyncio.Future] = collections.deque()
        total = int(rate * duration)
        rng = random.Random(7)
        arrivals, t = [], 0.0
        for i in range(total):
            arrivals.append(t)
            t += rng.expovariate(rate) if poisson else 1.0 / rate
        loop = asyncio.get_running_loop()

        async def one(scheduled: float, data: bytes) -> None:
            nonlocal n_conns
            if idle:
                conn = idle.pop()
            elif n_conns < max_conns:
                n_conns += 1
                conn = Conn(self.host, self.port)
            else:
                fut = loop.create_future()
                waiters.append(fut)
                conn = await fut
            await self._one(ph, conn, data, scheduled)
            if waiters:
                waiters.popleft().set_result(conn)
            else:
                idle.append(conn)

        tasks = set()
        cpu0 = _cpu_self()
        start = time.perf_counter() + 0.01
        ph.started = start
        i = 0
        while i < total:
            now = time.perf_counter()
            due = start + arrivals[i]
            if due > now:
                # at least 1 ms: the event loop's timers are millisecond-grained, a shorter sleep spins; how
                # late that makes a request is counted in its latency (and in late_max)
                await asyncio.sleep(max(due - now, 0.001))
                continue
            while i < total and start + arrivals[i] <= now:
                ph.late_max = max(ph.late_max, now - (start + arrivals[i]))
                seq = self.seq
                self.seq += 1
                ph.sent += 1
                task = asyncio.create_task(one(start + arrivals[i], self.reqs.build(seq)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
        if tasks:
            done, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
            for task in pending:
                task.cancel()
                ph.statuses["unfinished"] += 1
        ph.ended = time.perf_counter()
        ph.cpu = _cpu_self() - cpu0
        ph.connections = n_conns
        for c in idle:
            c.close()
        return ph


# ---- figures ---------------------------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summary(ph: Phase) -> dict:
    lat = sorted(ph.ok_latencies)
    elapsed = ph.ended - ph.started
    ms = {f"p{p}": round(percentile(lat, p) * 1000, 2) for p in (50, 90, 99)}
    ms["p99.9"] = round(percentile(lat, 99.9) * 1000, 2)
    ms["max"] = round(lat[-1] * 1000, 2) if lat else None
    ms["mean"] = round(sum(lat) / len(lat) * 1000, 2) if lat else None
    n = len(ph.latencies)
    return {"phase": ph.name, "sent": ph.sent, "answered": n, "ok": ph.ok,
            "statuses": {str(k): v for k, v in sorted(ph.statuses.items(), key=lambda kv: str(kv[0]))},
            "errors": sum(v for k, v in ph.statuses.items() if not (isinstance(k, int) and 200 <= k < 300)),
            "elapsed_s": round(elapsed, 3), "throughput_per_s": round(ph.ok / elapsed, 1) if elapsed else None,
            "latency_ms": ms, "connections": ph.connections,
            "client_cpu_s": round(ph.cpu, 3),
            "client_cpu_us_per_request": round(ph.cpu / n * 1e6, 1) if n else None,
            "client_cpu_core_share": round(ph.cpu / elapsed, 3) if elapsed else None,
            "open_loop_late_max_ms": round(ph.late_max * 1000, 2) if ph.late_max else None}


# ---- CPU time of process trees (server, PostgreSQL) -------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds) for every process we may read."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as fh:
                raw = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        out[int(d)] = (int(rest[1]), name, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def cpu_of_tree(root: int, table=None) -> float:
    table = table or _proc_table()
    kids = collections.defaultdict(list)
    for pid, (ppid, _n, _c) in table.items():
        kids[ppid].append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][2]
        stack.extend(kids.get(pid, ()))
    return total


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def wait_quiet(limit: float, threshold: float = 0.25, log=print) -> float:
    """Wait (up to ``limit`` seconds) until the machine's other work uses less than ``threshold`` of a core over
    two seconds; returns the busy cores last seen."""
    deadline = time.monotonic() + limit
    while True:
        b0 = machine_busy()
        time.sleep(2.0)
        busy = (machine_busy() - b0) / 2.0
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        log(f"waiting for a quiet machine: {busy:.2f} cores busy with other work")


def cpu_of_postgres(table=None) -> float:
    table = table or _proc_table()
    return sum(c for _pp, name, c in table.values() if name.startswith("postgres"))


def tree_pids(root: int) -> list[int]:
    table = _proc_table()
    kids = collections.defaultdict(list)
    for pid, (ppid, _n, _c) in table.items():
        kids[ppid].append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(kids.get(pid, ()))
    return out


# ---- the server -------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def priorauth_cmd() -> list[str]:
    return [sys.executable, "-m", "priorauth.cli"]


SERVER_SRC: str | None = None     # --ref: the server runs the package from this folder (PYTHONPATH)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORAUTH_")}
    env["PYTHONUNBUFFERED"] = "1"
    if SERVER_SRC:
        env["PYTHONPATH"] = SERVER_SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def export_ref(ref: str, into: Path) -> str:
    """``git archive <ref> src`` unpacked into ``into`` (read-only on the repository); returns the src folder."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref, "src"], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into / "src")


class Environment:
    """A fresh data folder and, for PostgreSQL, a fresh database; removed by ``close``."""

    def __init__(self, backend: str, pg_admin: str, keep: bool):
        self.backend, self.pg_admin, self.keep = backend, pg_admin, keep
        self.dir = Path(tempfile.mkdtemp(prefix="priorauth-bench-"))
        self.config = self.dir / "payer.yaml"
        self.config.write_text(f"policy_effective: {POLICY_EFFECTIVE}\n", encoding="utf-8")
        self.dbname = None
        if backend == "postgresql":
            import psycopg

            self.dbname = f"priorauth_bench_{secrets.token_hex(4)}"
            with psycopg.connect(pg_admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
            base = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            self.url = f"{base}/{self.dbname}"
        else:
            self.url = f"sqlite:///{self.dir / 'priorauth.sqlite'}"

    def store_args(self) -> list[str]:
        args = ["--data-dir", str(self.dir)]
        if self.backend == "postgresql":
            args += ["--database-url", self.url]
        return args

    def close(self) -> None:
        if self.keep:
            print(f"kept: {self.dir}" + (f" and database {self.dbname}" if self.dbname else ""), file=sys.stderr)
            return
        if self.dbname:
            import psycopg

            with psycopg.connect(self.pg_admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, env: Environment, port: int, workers: int, instrument: Path | None = None,
                 tweaks: dict | None = None):
        self.env, self.port, self.workers, self.instrument = env, port, workers, instrument
        self.tweaks = tweaks or {}
        self.log_path = env.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def add_client(self, client_id: str, role: str, organization: str | None) -> str:
        cmd = priorauth_cmd() + ["client", "add", client_id, "--role", role] + \
            (["--organization", organization] if organization else []) + self.env.store_args()
        out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"client add failed: {out.stderr.strip()}")
        return out.stdout.strip().splitlines()[-1]

    def start(self, ready_timeout: float = 60.0) -> None:
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(self.env.config),
                 "--workers", str(self.workers), "--no-seed"] + self.env.store_args()
        env = clean_env()
        if self.instrument or self.tweaks:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_serve", "--"] + serve
            env["BENCH_TWEAKS"] = json.dumps(self.tweaks)
            if self.instrument:
                env["BENCH_INSTRUMENT"] = str(self.instrument)
        else:
            cmd = priorauth_cmd() + serve
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        healthy = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        healthy += 1
                        # with several workers, wait until every worker has started (one answer each is not
                        # observable; the process count is)
                        if healthy >= 3 and len(tree_pids(self.proc.pid)) >= (1 if self.workers == 1 else
                                                                               self.workers + 1):
                            time.sleep(0.5 if self.workers == 1 else 2.0)
                            return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"the server did not become healthy in {ready_timeout:.0f}s:\n{self.tail()}")

    def instrument_signal(self, sig: int, timeout: float = 30.0) -> dict | None:
        """Reset (SIGUSR1) or dump (SIGUSR2, returns the figures) the instrumented server's timers."""
        if sig == signal.SIGUSR2 and self.instrument.exists():
            self.instrument.unlink()
        self.proc.send_signal(sig)
        if sig != signal.SIGUSR2:
            time.sleep(0.2)
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.instrument.exists():
                return json.loads(self.instrument.read_text())
            time.sleep(0.1)
        raise SystemExit("the instrumented server did not write its timers")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)      # the server's own session, started above
            self.proc.wait()
        self.log.close()


def get_token(port: int, client_id: str, secret: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/oauth/token", data=b"grant_type=client_credentials",
                                 headers={"Authorization": "Basic " + b64encode(f"{client_id}:{secret}".encode())
                                          .decode(), "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["access_token"]


def store_counts(url: str, verify_audit: bool) -> dict:
    from sqlalchemy import func, select

    from priorauth.store import Store
    from priorauth.store.models import AuditRow, CaseRow, DeterminationRow, SubmissionRow

    store = Store(url)
    try:
        with store._read() as s:
            counts = {name: s.scalar(select(func.count()).select_from(model))
                      for name, model in (("cases", CaseRow), ("submissions", SubmissionRow),
                                          ("determinations", DeterminationRow), ("audit_entries", AuditRow))}
        if verify_audit:
            t0 = time.perf_counter()
            ok, checked, bad = store.verify_audit()
            counts["audit_chain"] = {"ok": ok, "entries": checked, "first_bad": bad,
                                     "seconds": round(time.perf_counter() - t0, 2)}
    finally:
        store.close()
    return counts


# ---- profiling with py-spy ----------------------------------------------------------------------------------------------

# (label, function name, path fragment): the stages of a request, matched on py-spy frames "func (path:line)"
STAGES = [
    ("endpoint submit", "submit", "service/fhir_api.py"),
    ("read+parse body", "read_resource", "service/http.py"),
    ("auth: token check", "principal", "service/auth.py"),
    ("svc.submit", "submit", "service/core.py"),
    ("svc._prior_case", "_prior_case", "service/core.py"),
    ("store.submit", "submit", "store/core.py"),
    ("content_hash", "content_hash", "store/core.py"),
    ("replay check (read txn)", "_try_replay", "store/core.py"),
    ("identifier check", "_identifier_used", "store/core.py"),
    ("evaluate", "evaluate", "service/core.py"),
    ("FHIR intake (case_from_bundle)", "case_from_bundle", "fhir/pas_intake.py"),
    ("determine", "determine", "priorauth/determination.py"),
    ("review_due", "review_due", "priorauth/determination.py"),
    ("determination row (to_json + json.dumps)", "_determination_row", "store/core.py"),
    ("event row", "_change", "store/core.py"),
    ("audit append", "_append_audit", "store/core.py"),
    ("commit", "commit", "sqlalchemy/orm/session.py"),
    ("response()", "response", "service/core.py"),
    ("response: read rows (_current)", "_current", "service/core.py"),
    ("response_bundle", "response_bundle", "fhir/claim_response.py"),
    ("fhir_response (orjson.dumps)", "fhir_response", "service/http.py"),
    ("/health", "health", "service/app.py"),
    ("token endpoint", "token", "service/app.py"),
]

LIBRARIES = [
    ("sqlalchemy", "sqlalchemy/"), ("psycopg", "psycopg"), ("sqlite3", "sqlite3/"), ("pydantic", "pydantic"),
    ("fhir.resources", "fhir/resources"), ("fhir_core", "fhir_core"), ("pint", "pint/"), ("yaml", "yaml/"),
    ("json (stdlib)", "json/"), ("jwt", "jwt/"), ("priorauth", "priorauth/"), ("starlette", "starlette/"),
    ("fastapi", "fastapi/"), ("uvicorn", "uvicorn/"), ("anyio (threadpool)", "anyio/"),
    ("asyncio", "asyncio/"), ("threading", "threading.py"), ("concurrent", "concurrent/"),
]

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<path>[^()]*):\d+\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for fr in stack.split(";"):
        m = _FRAME.match(fr.strip())
        out.append((m.group("func"), m.group("path")) if m else (fr.strip(), ""))
    return out


def profile_breakdown(path: Path, rate: int, requests: int) -> dict:
    """From py-spy's collapsed stacks: per stage (innermost stage frame), per stage path and per library (the
    leaf's library), the samples and the milliseconds per request they stand for."""
    by_stage, by_path, by_lib, inclusive = (collections.Counter() for _ in range(4))
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = _frames(stack)
        labels = []
        for func, p in frames:
            name = func.rsplit(".", 1)[-1]
            for label, fname, frag in STAGES:
                if name == fname and frag in p:
                    labels.append(label)
                    break
        for label in dict.fromkeys(labels):
            inclusive[label] += n
        by_stage[labels[-1] if labels else "(outside the stages: event loop, HTTP, framework, threads)"] += n
        by_path[" > ".join(labels) if labels else "(none)"] += n
        leaf = frames[-1][1] if frames else ""
        lib = next((name for name, frag in LIBRARIES if frag in leaf), "other: " + (leaf.rsplit("/", 2)[-2] if
                                                                                     "/" in leaf else leaf or "?"))
        if lib == "priorauth":
            lib = "priorauth: " + leaf.split("priorauth/", 1)[1]
        by_lib[lib] += n

    def ms(n):
        return round(n / rate / max(requests, 1) * 1000, 3)

    def table(counter, top=40):
        return [{"name": k, "samples": v, "share": round(v / total, 4) if total else 0, "ms_per_request": ms(v)}
                for k, v in counter.most_common(top)]

    return {"samples": total, "rate_hz": rate, "requests": requests,
            "sampled_ms_per_request": ms(total),
            "stages_exclusive": table(by_stage), "stages_inclusive": table(inclusive),
            "stage_paths": table(by_path, 25), "leaf_libraries": table(by_lib, 25)}


def print_profile(p: dict) -> None:
    print(f"\nprofile: {p['samples']} samples at {p['rate_hz']} Hz over {p['requests']} answered requests = "
          f"{p['sampled_ms_per_request']} ms sampled per request")
    for key, title in (("stages_inclusive", "stage, inclusive (everything below it)"),
                       ("stages_exclusive", "stage, exclusive (innermost stage on the stack)"),
                       ("stage_paths", "stage path"), ("leaf_libraries", "where the leaf frame is")):
        print(f"  {title}:")
        for row in p[key]:
            if row["share"] < 0.005:
                continue
            print(f"    {row['ms_per_request']:8.3f} ms/req {row['share'] * 100:5.1f}%  {row['name']}")


# ---- in-process instrumentation of the server (--instrument) ----------------------------------------------------------
#
# The server is started as ``python bench_service.py --_instrumented-serve OUT serve ...``: this process wraps some of
# the service's functions with timers (wall time and the calling thread's CPU time), counts the SQL statements and
# their round trips, times each HTTP request inside the ASGI app, then runs ``priorauth serve`` (one worker, so the
# app runs in this same process). SIGUSR1 resets the figures (after the warm-up), SIGUSR2 writes them to OUT.
# Nested functions are timed each on its own: a parent's time includes its children's.

def _install_timers(out: str) -> None:
    import functools
    import threading
    import types

    import orjson
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.default import DefaultDialect
    from sqlalchemy.orm import Session

    import priorauth.service.app as app_mod
    import priorauth.service.core as core_mod
    import priorauth.service.fhir_api as fhir_mod
    import priorauth.service.http as http_mod
    import priorauth.store.core as store_mod
    from priorauth.service.auth import TokenIssuer
    from priorauth.service.core import AuthorizationService
    from priorauth.store import Store

    perf, tcpu = time.perf_counter, time.thread_time
    tls = threading.local()
    tables: list[dict] = []
    requests_seen = collections.Counter()
    reset_at = [time.time()]

    def acc() -> dict:
        d = getattr(tls, "d", None)
        if d is None:
            d = tls.d = {}
            tables.append(d)
        return d

    def add(label: str, wall: float, cpu: float) -> None:
        d = acc()
        e = d.get(label)
        if e is None:
            e = d[label] = [0, 0.0, 0.0]
        e[0] += 1
        e[1] += wall
        e[2] += cpu

    def timed(label: str, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            t0, c0 = perf(), tcpu()
            try:
                return fn(*a, **k)
            finally:
                add(label, perf() - t0, tcpu() - c0)
        return wrapper

    def timed_async(label: str, fn):
        @functools.wraps(fn)
        async def wrapper(*a, **k):
            t0 = perf()
            try:
                return await fn(*a, **k)
            finally:
                add(label, perf() - t0, 0.0)
        return wrapper

    for owner, name, label in (          # classes and modules whose functions are timed
            (AuthorizationService, "submit", "svc.submit (in the threadpool)"),
            (AuthorizationService, "_prior_case", "svc._prior_case"),
            (AuthorizationService, "evaluate", "svc.evaluate"),
            (AuthorizationService, "response", "svc.response (rebuild from the store)"),
            (Store, "submit", "store.submit"),
            (Store, "_insert_new_case", "store._insert_new_case (one statement on PostgreSQL)"),
            (Store, "_try_replay", "store._try_replay (read txn; audit txn on a replay)"),
            (Store, "_find_submission", "store._find_submission (1 SELECT)"),
            (Store, "_identifier_used", "store._identifier_used (1-2 SELECT)"),
            (Store, "_determination_row", "store._determination_row (to_json + json.dumps)"),
            (Store, "_change", "store._change (event row)"),
            (Store, "_append_audit", "store._append_audit (lock head, hash, insert)"),
            (Session, "flush", "sqlalchemy Session.flush (explicit and autoflush)"),
            (Session, "close", "sqlalchemy Session.close (returns the connection)"),
            (TokenIssuer, "principal", "auth: bearer token check (JWT)"),
            (core_mod, "case_from_bundle", "engine: case_from_bundle (FHIR intake)"),
            (core_mod, "determine", "engine: determine"),
            (core_mod, "review_due", "engine: review_due"),
            (core_mod, "response_bundle", "response_bundle (PAS response)"),
            (store_mod, "content_hash", "store: content_hash (canonical JSON + SHA-256)"),
            (store_mod, "canonical_json", "store: canonical_json (all calls)"),
            (store_mod, "audit_hash", "store: audit_hash"),
            (fhir_mod, "fhir_response", "fhir_response (orjson.dumps + Response)"),
    ):
        if hasattr(owner, name):
            setattr(owner, name, timed(label, getattr(owner, name)))
    fhir_mod.read_resource = timed_async("read_resource (wall: awaiting the body + parse)", fhir_mod.read_resource)
    fhir_mod.run_in_threadpool = timed_async("run_in_threadpool (wall: queueing for a thread + svc.submit)",
                                             fhir_mod.run_in_threadpool)
    http_mod.orjson = types.SimpleNamespace(loads=timed("orjson.loads (request body)", orjson.loads),
                                            dumps=timed("orjson.dumps (response body)", orjson.dumps),
                                            JSONDecodeError=orjson.JSONDecodeError)

    commit, rollback = DefaultDialect.do_commit, DefaultDialect.do_rollback

    def do_commit(self, dbapi_connection):
        t0, c0 = perf(), tcpu()
        try:
            return commit(self, dbapi_connection)
        finally:
            now = perf()
            add("sql: COMMIT (round trip + WAL flush)", now - t0, tcpu() - c0)
            locked = getattr(tls, "locked", None)
            if locked is not None:
                add("audit_head row lock held (FOR UPDATE answered to COMMIT done)", now - locked, 0.0)
                tls.locked = None

    def do_rollback(self, dbapi_connection):
        t0, c0 = perf(), tcpu()
        try:
            return rollback(self, dbapi_connection)
        finally:
            add("sql: ROLLBACK (ends a read session)", perf() - t0, tcpu() - c0)
            tls.locked = None

    DefaultDialect.do_commit, DefaultDialect.do_rollback = do_commit, do_rollback
    from sqlalchemy.pool import QueuePool

    QueuePool._do_get = timed("pool: get a connection (waits when all are in use)", QueuePool._do_get)

    def sql_kind(statement: str) -> str:
        words = statement.split()
        if not words:
            return "?"
        verb = words[0].upper()
        table = "?"
        up = [w.upper() for w in words]
        key = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE", "DELETE": "FROM", "WITH": "FROM"}.get(verb)
        if key and key in up:
            i = up.index(key)
            if i + 1 < len(words):
                table = words[i + 1].strip('"(,')
        lock = " FOR UPDATE" if "FOR UPDATE" in statement.upper() else ""
        return f"{verb} {table}{lock}" if verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH") else verb

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t"] = (perf(), tcpu())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        t0, c0 = conn.info.pop("bench_t", (perf(), tcpu()))
        wall, cpu = perf() - t0, tcpu() - c0
        add("sql: every statement (cursor.execute)", wall, cpu)
        kind = sql_kind(statement)
        add("sql: " + kind, wall, cpu)
        if kind.endswith("FOR UPDATE") and "audit_head" in kind:
            # the lock is held from here (its wait is the statement's); when one statement (WITH ...) takes the
            # lock and does the rest, only the time from its answer to the COMMIT is seen
            tls.locked = perf()


    class Timing:
        """The ASGI app with each HTTP request timed from its first byte in to its last byte out."""

        def __init__(self, app):
            self.app = app
            for attr in ("state", "router", "routes"):
                if hasattr(app, attr):
                    setattr(self, attr, getattr(app, attr))

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            t0 = perf()
            path = scope.get("path", "")
            label = "http: POST /fhir/Claim/$submit" if path.endswith("$submit") else f"http: {path[:40]}"

            async def timed_send(message):
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    add(label + " (server wall, first byte in to last byte out)", perf() - t0, 0.0)
                    requests_seen[label] += 1

            await self.app(scope, receive, timed_send)

    create = app_mod.create_app

    def create_app(*a, **k):
        return Timing(create(*a, **k))

    app_mod.create_app = create_app

    def reset(*_):
        for d in list(tables):
            d.clear()
        requests_seen.clear()
        reset_at[0] = time.time()

    def dump(*_):
        merged: dict[str, list] = {}
        for d in list(tables):
            for k, (n, w, c) in list(d.items()):
                e = merged.setdefault(k, [0, 0.0, 0.0])
                e[0] += n
                e[1] += w
                e[2] += c
        r = resource.getrusage(resource.RUSAGE_SELF)
        data = {"since": reset_at[0], "until": time.time(), "requests": dict(requests_seen),
                "threads": len(tables), "process_cpu_s": r.ru_utime + r.ru_stime,
                "timers": {k: {"calls": v[0], "wall_s": v[1], "cpu_s": v[2]} for k, v in merged.items()}}
        tmp = out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, out)

    signal.signal(signal.SIGUSR1, reset)
    signal.signal(signal.SIGUSR2, dump)


def _install_tweaks(tweaks: dict) -> None:
    """Experiments on the running server, by monkeypatching in the worker process (the service's code is not
    changed): the GIL switch interval, the threadpool size, the connection pool."""
    import anyio.to_thread

    import priorauth.service.app as app_mod
    import priorauth.store.core as store_mod

    if tweaks.get("switch_interval"):
        sys.setswitchinterval(float(tweaks["switch_interval"]))
    if tweaks.get("pool_size"):
        create_engine = store_mod.create_engine

        def patched_create_engine(url, **kw):
            if "pool_size" in kw:
                kw["pool_size"] = int(tweaks["pool_size"])
                kw["max_overflow"] = int(tweaks.get("max_overflow", kw["pool_size"]))
            return create_engine(url, **kw)

        store_mod.create_engine = patched_create_engine
    if tweaks.get("threadpool"):
        tokens = int(tweaks["threadpool"])
        create = app_mod.create_app

        class Limited:
            def __init__(self, app):
                self.app, self.done = app, False
                self.state = getattr(app, "state", None)

            async def __call__(self, scope, receive, send):
                if not self.done:
                    anyio.to_thread.current_default_thread_limiter().total_tokens = tokens
                    self.done = True
                return await self.app(scope, receive, send)

        app_mod.create_app = lambda *a, **k: Limited(create(*a, **k))


def _server_app():
    """The app factory the wrapped server runs in every worker: tweaks, timers, then priorauth's own factory."""
    import priorauth.service.app as app_mod

    tweaks = json.loads(os.environ.get("BENCH_TWEAKS") or "{}")
    if tweaks:
        _install_tweaks(tweaks)
    if os.environ.get("BENCH_INSTRUMENT"):
        _install_timers(os.environ["BENCH_INSTRUMENT"])
    return app_mod.app_from_env()


def _wrapped_serve(argv: list[str]) -> None:
    """``priorauth serve`` with uvicorn pointed at :func:`_server_app` (also in spawned workers)."""
    import uvicorn

    run = uvicorn.run
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)

    def patched_run(app, *a, **k):
        return run("bench_service:_server_app", *a, **k)

    uvicorn.run = patched_run
    sys.argv = ["priorauth"] + argv
    from priorauth.cli import main as cli_main

    cli_main()


def instrument_report(data: dict, cpu_reset: float | None = None) -> dict:
    """ms per $submit of every timer: calls per request, wall ms and CPU ms (of the calling thread)."""
    n = next((v for k, v in data["requests"].items() if "$submit" in k), 0) or sum(data["requests"].values()) or 1
    rows = []
    for label, t in data["timers"].items():
        rows.append({"name": label, "calls_per_request": round(t["calls"] / n, 2),
                     "wall_ms_per_request": round(t["wall_s"] / n * 1000, 3),
                     "cpu_ms_per_request": round(t["cpu_s"] / n * 1000, 3)})
    order = [r["name"] for r in rows]
    rows.sort(key=lambda r: (not r["name"].startswith("http"), r["name"].startswith("sql"), -r["wall_ms_per_request"],
                             order.index(r["name"])))
    return {"requests": n, "seconds": round(data["until"] - data["since"], 2), "threads": data["threads"],
            "timers": rows}


def print_instrument(rep: dict) -> None:
    print(f"\ninstrumented server: {rep['requests']} $submit requests over {rep['seconds']}s "
          f"({rep['threads']} threads timed); per request:")
    print(f"    {'calls':>6s} {'wall ms':>9s} {'CPU ms':>8s}  timer")
    for r in rep["timers"]:
        print(f"    {r['calls_per_request']:6.2f} {r['wall_ms_per_request']:9.3f} {r['cpu_ms_per_request']:8.3f}  "
              f"{r['name']}")


# ---- the stub server (the load generator's own ceiling) --------------------------------------------------------------

def run_stub_server(port: int, body_size: int) -> None:
    body = b'{"resourceType":"Bundle","entry":["' + b"x" * max(0, body_size - 40) + b'"]}'
    answer = (f"HTTP/1.1 201 Created\r\ncontent-type: application/fhir+json\r\ncontent-length: {len(body)}\r\n"
              "location: /fhir/ClaimResponse/x\r\n\r\n").encode() + body

    class Stub(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf, self.need = transport, b"", None

        def data_received(self, data):
            self.buf += data
            while True:
                if self.need is None:
                    i = self.buf.find(b"\r\n\r\n")
                    if i < 0:
                        return
                    head = self.buf[:i].lower()
                    j = head.find(b"content-length:")
                    n = int(head[j + 15:].split(b"\r\n", 1)[0]) if j >= 0 else 0
                    self.need = i + 4 + n
                if len(self.buf) < self.need:
                    return
                self.buf = self.buf[self.need:]
                self.need = None
                self.t.write(answer)

    async def main():
        server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    _use_uvloop()
    asyncio.run(main())


def _use_uvloop() -> str:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


# ---- main ----------------------------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-admin-url", default=os.environ.get("PRIORAUTH_BENCH_PG", PG_ADMIN_DEFAULT),
                    help="libpq URL of a database to run CREATE/DROP DATABASE from (default %(default)s)")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    ap.add_argument("--clients", type=int, default=50,
                    help="closed loop: concurrent clients; open loop: connections opened up front (default 50)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    ap.add_argument("--requests", type=int, default=None, help="closed loop: measure this many requests instead")
    ap.add_argument("--rate", type=float, default=None, help="open loop: arrivals per second")
    ap.add_argument("--poisson", action="store_true", help="open loop: exponential inter-arrival times")
    ap.add_argument("--max-connections", type=int, default=1000, help="open loop: connection cap (default 1000)")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds, closed loop (default 3)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    ap.add_argument("--endpoint", choices=("submit", "health"), default="submit",
                    help="what to load: PAS $submit (default) or GET /health (framework + one DB round trip)")
    ap.add_argument("--bundles", nargs="*", default=None, help="request Bundles (default examples/fhir/*.json)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="record the server with py-spy during the measured phase to this collapsed-stack file")
    ap.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    ap.add_argument("--profile-gil", action="store_true", help="py-spy --gil: only the thread holding the GIL")
    ap.add_argument("--instrument", type=Path, default=None,
                    help="time the service's functions and SQL statements inside the server (one worker) during "
                         "the measured phase; the figures go to this JSON file and the report")
    ap.add_argument("--think", type=float, default=0.0,
                    help="closed loop: mean think time in seconds between a client's answer and its next "
                         "request (exponential; default 0)")
    ap.add_argument("--ref", default=None,
                    help="run the server from this git commit (git archive of src/ into the data folder) instead "
                         "of the working tree")
    x = ap.add_argument_group("experiments on the server process (monkeypatched at start-up; the service's code "
                              "is not changed)")
    x.add_argument("--x-switch-interval", type=float, default=None,
                   help="sys.setswitchinterval in every worker (CPython default 0.005 s)")
    x.add_argument("--x-threadpool", type=int, default=None,
                   help="threads for the sync endpoints and run_in_threadpool (anyio default 40)")
    x.add_argument("--x-pool-size", type=int, default=None,
                   help="SQLAlchemy pool_size = max_overflow (the store's default is 10 + 10)")
    ap.add_argument("--src", type=Path, default=None,
                    help="run the server from this folder holding the priorauth package (such as a copy of src/)")
    ap.add_argument("--no-verify-audit", action="store_true", help="skip walking the audit chain afterwards")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="first wait up to this many seconds for other work on the machine to stop")
    ap.add_argument("--keep", action="store_true", help="keep the data folder and database")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    ap.add_argument("--stub", action="store_true",
                    help="measure the load generator alone against a canned-answer server (no priorauth)")
    ap.add_argument("--stub-body", type=int, default=12000, help="--stub: answer body bytes (default 12000)")
    ap.add_argument("--_stub-server", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem, 1), "python": sys.version.split()[0],
            "kernel": os.uname().release}


def source(ref: str | None) -> dict:
    """The code the server ran: a commit (``--ref``), or the working tree: HEAD and the files changed since."""
    def git(*a):
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    if ref and ref.startswith("dir:"):
        return {"src": ref[4:]}
    if ref:
        return {"ref": ref, "commit": git("rev-parse", "--short", ref + "^{commit}")}
    return {"working_tree": True, "head": git("rev-parse", "--short", "HEAD"),
            "changed": [ln[3:] for ln in (git("status", "--porcelain", "--", "src") or "").splitlines()]}


def log(args, msg: str) -> None:
    print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)


async def measure(args, load: Load) -> Phase:
    if args.rate:
        return await load.open_loop("measured", args.rate, args.duration, args.clients, args.max_connections,
                                    args.poisson, drain_timeout=max(args.timeout, 10.0))
    return await load.closed("measured", args.clients, None if args.requests else args.duration, args.requests,
                             args.think)


def run(args) -> dict:
    loop_name = _use_uvloop()
    files = args.bundles or sorted(str(p) for p in (ROOT / "examples" / "fhir").glob("*.json"))
    result: dict = {"machine": machine(), "source": source("dir:" + str(args.src) if args.src else args.ref),
                    "load_generator": {"event_loop": loop_name},
                    "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                if not k.startswith("_")}}
    run_id = "bench-" + secrets.token_hex(4)

    if args.stub:
        port = free_port()
        stub = subprocess.Popen([sys.executable, __file__, "--_stub-server", str(port), "--stub-body",
                                 str(args.stub_body)], start_new_session=True)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            reqs = Requests("submit", files, "127.0.0.1", port, "x" * 200, run_id)
            load = Load("127.0.0.1", port, reqs, args.timeout, 201)
            asyncio.run(load.closed("warmup", args.clients, min(args.warmup, 1.0), None))
            ph = asyncio.run(measure(args, load))
        finally:
            stub.terminate()
            stub.wait()
        result["measured"] = summary(ph)
        result["target"] = "stub"
        return result

    global SERVER_SRC
    if args.wait_quiet:
        busy = wait_quiet(args.wait_quiet, log=lambda m: log(args, m))
        result["busy_cores_before"] = round(busy, 2)
    env = Environment(args.backend, args.pg_admin_url, args.keep)
    if args.src:
        SERVER_SRC = str(args.src.resolve())
    elif args.ref:
        SERVER_SRC = export_ref(args.ref, env.dir)
    tweaks = {k: v for k, v in (("switch_interval", args.x_switch_interval), ("threadpool", args.x_threadpool),
                                ("pool_size", args.x_pool_size)) if v}
    server = Server(env, free_port(), args.workers, args.instrument.resolve() if args.instrument else None, tweaks)
    result["server_experiments"] = tweaks
    try:
        secret = server.add_client("bench-provider", "provider", "bench-org")
        server.start()
        port = server.port
        token = get_token(port, "bench-provider", secret)
        reqs = Requests(args.endpoint, files, "127.0.0.1", port, token, run_id)
        expect = 201 if args.endpoint == "submit" else 200
        load = Load("127.0.0.1", port, reqs, args.timeout, expect)
        log(args, f"server: priorauth serve --workers {args.workers} on 127.0.0.1:{port}, store "
                  f"{args.backend}{' ' + env.dbname if env.dbname else ''}; {len(files)} bundles; "
                  f"load generator on {loop_name}")
        warm = None
        if args.warmup > 0:
            warm = asyncio.run(load.closed("warmup", args.clients, args.warmup, None))
            log(args, f"warm-up: {warm.ok} ok in {warm.ended - warm.started:.1f}s, statuses {dict(warm.statuses)}")
        spy = None
        if args.profile:
            pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            cmd = [pyspy, "record", "--pid", str(server.proc.pid), "--subprocesses", "--rate",
                   str(args.profile_rate), "--format", "raw", "--output", str(args.profile), "--nonblocking"]
            if args.profile_gil:
                cmd.append("--gil")
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            time.sleep(1.0)
        if args.instrument:
            server.instrument_signal(signal.SIGUSR1)
        table0 = _proc_table()
        srv0, pg0, busy0, me0 = cpu_of_tree(server.proc.pid, table0), cpu_of_postgres(table0), machine_busy(), \
            _cpu_self()
        ph = asyncio.run(measure(args, load))
        table1 = _proc_table()
        srv1, pg1, busy1, me1 = cpu_of_tree(server.proc.pid, table1), cpu_of_postgres(table1), machine_busy(), \
            _cpu_self()
        if args.instrument:
            result["instrument"] = instrument_report(server.instrument_signal(signal.SIGUSR2))
        if spy is not None:
            spy.send_signal(signal.SIGINT)      # py-spy writes its output on SIGINT
            try:
                _out, err = spy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _out, err = spy.communicate()
        s = summary(ph)
        n = max(len(ph.latencies), 1)
        elapsed = ph.ended - ph.started
        s["server_cpu_ms_per_request"] = round((srv1 - srv0) / n * 1000, 2)
        s["server_cpu_cores"] = round((srv1 - srv0) / elapsed, 2)
        if args.backend == "postgresql":
            s["postgres_cpu_ms_per_request"] = round((pg1 - pg0) / n * 1000, 2)
            s["postgres_cpu_cores"] = round((pg1 - pg0) / elapsed, 2)
        s["machine_busy_cores"] = round((busy1 - busy0) / elapsed, 2)
        # what else ran on the machine meanwhile (other people's tests, py-spy): figures are only comparable
        # when this is near 0
        s["other_busy_cores"] = round(max(0.0, (busy1 - busy0) - (srv1 - srv0) - (me1 - me0)
                                          - ((pg1 - pg0) if args.backend == "postgresql" else 0.0)) / elapsed, 2)
        result["measured"] = s
        if warm is not None:
            result["warmup"] = summary(warm)
        if spy is not None:
            if args.profile.exists() and args.profile.stat().st_size:
                result["profile"] = profile_breakdown(args.profile, args.profile_rate, len(ph.latencies))
                result["profile"]["file"] = str(args.profile)
                result["profile"]["gil_only"] = args.profile_gil
            else:
                result["profile"] = {"error": (err or b"").decode(errors="replace")[-2000:]}
        server.stop()
        if args.endpoint == "submit":
            counts = store_counts(env.url, not args.no_verify_audit)
            ok_total = ph.ok + (warm.ok if warm else 0)
            counts["successful_submissions"] = ok_total
            # a request the generator gave up on (timeout, cancelled at the end, connection error) may still have
            # been stored: then the store may hold up to that many more cases than answered 2xx
            unknown = sum(v for k, v in ph.statuses.items() if not isinstance(k, int)) + \
                (sum(v for k, v in warm.statuses.items() if not isinstance(k, int)) if warm else 0)
            counts["unanswered"] = unknown
            counts["match"] = counts["cases"] == counts["submissions"] == counts["determinations"] and \
                ok_total <= counts["cases"] <= ok_total + unknown
            counts["exact"] = counts["cases"] == ok_total
            result["store_check"] = counts
        return result
    finally:
        server.stop()
        env.close()


def report(result: dict) -> None:
    m = result["measured"]
    o = result["options"]
    mode = f"open loop {o['rate']:g} req/s" + (" (Poisson)" if o.get("poisson") else "") if o.get("rate") else \
        f"closed loop, {o['clients']} clients"
    target = "stub server" if result.get("target") == "stub" else \
        f"{o['endpoint']} on {o['backend']}, {o['workers']} worker(s)"
    lat = m["latency_ms"]
    print(f"\n{target}; {mode}; {m['elapsed_s']}s measured")
    print(f"  throughput  {m['throughput_per_s']} successful/s  ({m['ok']} ok of {m['sent']} sent, "
          f"{m['connections']} connections)")
    print(f"  latency ms  p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  p99.9 {lat['p99.9']}  "
          f"max {lat['max']}  mean {lat['mean']}")
    print(f"  statuses    {m['statuses']}")
    if not o.get("rate") and not o.get("think") and m["throughput_per_s"]:
        print(f"  Little      {o['clients']} clients / {m['throughput_per_s']} per s = "
              f"{o['clients'] / m['throughput_per_s'] * 1000:.0f} ms: the mean latency any closed loop without think "
              "time must show at this throughput")
    line = f"  CPU         load generator {m['client_cpu_us_per_request']} us/req ({m['client_cpu_core_share']} core)"
    if "server_cpu_ms_per_request" in m:
        line += f"; server {m['server_cpu_ms_per_request']} ms/req ({m['server_cpu_cores']} cores)"
    if "postgres_cpu_ms_per_request" in m:
        line += f"; PostgreSQL {m['postgres_cpu_ms_per_request']} ms/req ({m['postgres_cpu_cores']} cores)"
    print(line)
    if "machine_busy_cores" in m:
        print(f"  machine     {m['machine_busy_cores']} cores busy, of which {m['other_busy_cores']} by other "
              f"processes (not this benchmark)")
    if m.get("open_loop_late_max_ms") is not None:
        print(f"  generator   sent at most {m['open_loop_late_max_ms']} ms after the scheduled time")
    if "store_check" in result:
        c = result["store_check"]
        audit = c.get("audit_chain")
        print(f"  store       {c['cases']} cases, {c['submissions']} submissions, {c['determinations']} "
              f"determinations for {c['successful_submissions']} successful submissions (warm-up included"
              + (f"; {c['unanswered']} requests unanswered" if c.get("unanswered") else "") + "): "
              f"{'OK' if c['match'] else 'MISMATCH'}; audit chain "
              + (f"{'verified' if audit['ok'] else 'BROKEN at ' + str(audit['first_bad'])} ({audit['entries']} "
                 f"entries)" if audit else "not checked"))
    if result.get("instrument"):
        print_instrument(result["instrument"])
    if result.get("profile"):
        if "error" in result["profile"]:
            print(f"  profile     py-spy failed: {result['profile']['error']}")
        else:
            print_profile(result["profile"])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_serve"]:
        _wrapped_serve(argv[2:])
        return 0
    args = parse_args(argv)
    if args.instrument and args.workers != 1:
        raise SystemExit("--instrument times the app inside the one server process: use --workers 1")
    if args._stub_server:
        run_stub_server(args._stub_server, args.stub_body)
        return 0
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    check = result.get("store_check")
    return 1 if check is not None and not (check["match"] and check.get("audit_chain", {"ok": True})["ok"]) else 0


if __name__ == "__main__":
    sys.exit(main())
