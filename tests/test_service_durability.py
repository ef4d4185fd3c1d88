"""The service as a real process: ``priorauth serve`` on SQLite (a temporary data dir) and on PostgreSQL (a fresh
database), a burst of concurrent PAS submissions, the server SIGKILLed in the middle of it. Afterwards:

- every submission the server acknowledged (a 2xx) is in the store: its case, submission and determination, under
  the case id the answer named;
- nothing is half-written: every case has its submission, determination, ``submitted`` event and its one
  ``case.submit`` audit entry, and every submission and determination belongs to a case;
- ``priorauth audit verify`` exits 0;
- the server starts again on the same store and serves: ``/health`` is 200, an acknowledged bundle sent again gets
  the same case, a new one is accepted, and the audit chain still verifies.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from conftest import ROOT

EXAMPLES = ROOT / "examples" / "fhir"
BURST = 120                 # submissions fired
THREADS = 16                # at once
KILL_AFTER = 20             # acknowledged answers before the SIGKILL
START_TIMEOUT = 30.0


def _priorauth() -> list[str]:
    exe = Path(sys.executable).parent / "priorauth"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("priorauth")
    if found:
        return [found]
    return [sys.executable, "-c", "from priorauth.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store_args(store: dict) -> list[str]:
    args = ["--data-dir", str(store["data_dir"])]
    if store["database_url"]:
        args += ["--database-url", store["database_url"]]
    return args


def _cli(store: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(_priorauth() + list(args) + _store_args(store), capture_output=True, text=True, timeout=60,
                       env=store["env"], cwd=store["data_dir"])
    if check:
        assert r.returncode == 0, f"priorauth {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


class Server:
    """``priorauth serve`` in its own process group, its output in a log file."""

    def __init__(self, store: dict, log: Path, workers: int = 1):
        self.store, self.log_path, self.workers = store, log, workers
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            _priorauth() + ["serve", "--port", str(self.port), "--no-seed", "--config", str(self.store["config"]),
                            "--workers", str(self.workers)] + _store_args(self.store),
            stdout=self.log, stderr=subprocess.STDOUT, env=self.store["env"],
            cwd=self.store["data_dir"], start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited {self.proc.returncode} while starting:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not answer /health within {START_TIMEOUT} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (the server and any worker)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it has not ended in 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()
        if getattr(self, "log", None) is not None:
            self.log.close()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


@pytest.fixture
def store(url, tmp_path):
    """Where the server keeps its data: SQLite in a temporary data dir (by --data-dir alone), or the fresh
    PostgreSQL database of the ``url`` fixture (--database-url)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "payer.yaml"
    config.write_text("policy_effective: 2026-12-23\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIORAUTH_")}
    env["PRIORAUTH_SIGNING_KEY"] = "durability-test-signing-key-" + "x" * 20
    if url.startswith("sqlite"):
        database_url, store_url = None, f"sqlite:///{data_dir.resolve() / 'priorauth.sqlite'}"
    else:
        database_url = store_url = url
    return {"data_dir": data_dir, "database_url": database_url, "url": store_url, "config": config, "env": env}


def _bundles(n: int, run: str) -> dict[str, bytes]:
    """``n`` request Bundles (the examples in turn), each with an identifier of its own."""
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    out = {}
    for i in range(n):
        b = copy.deepcopy(examples[i % len(examples)])
        value = f"dur-{run}-{i:04d}"
        b["identifier"] = {**b["identifier"], "value": value}
        out[value] = json.dumps(b).encode()
    return out


def _token(base: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                   timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _burst(server: Server, token: str, bundles: dict[str, bytes]) -> tuple[dict[str, dict], int, bool]:
    """Fire the bundles from THREADS threads; SIGKILL the server after KILL_AFTER acknowledgements. Returns the
    acknowledged ones (identifier -> status, case id, response), how many failed, and whether the kill came while
    requests were still outstanding."""
    acked: dict[str, dict] = {}
    failed = 0
    lock = threading.Lock()
    enough = threading.Event()
    local = threading.local()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}

    def send(item: tuple[str, bytes]) -> None:
        nonlocal failed
        value, body = item
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.base, timeout=httpx.Timeout(15.0, connect=5.0))
        try:
            r = local.client.post("/fhir/Claim/$submit", content=body, headers=headers)
        except httpx.HTTPError:
            with lock:
                failed += 1
            return
        with lock:
            if 200 <= r.status_code < 300:
                acked[value] = {"status": r.status_code, "case": r.headers["location"].rsplit("/", 1)[1],
                                "response": r.json()}
                if len(acked) >= KILL_AFTER:
                    enough.set()
            else:
                failed += 1

    killer_done = threading.Event()
    outstanding_at_kill = []

    def killer() -> None:
        enough.wait(timeout=60)
        with lock:
            outstanding_at_kill.append(len(acked) + failed < len(bundles))
        server.kill()
        killer_done.set()

    k = threading.Thread(target=killer, daemon=True)
    k.start()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(send, bundles.items()))
    enough.set()
    killer_done.wait(timeout=30)
    return acked, failed, bool(outstanding_at_kill and outstanding_at_kill[0])


def _check_store(url: str, acked: dict[str, dict]) -> dict[str, int]:
    """Every acknowledged submission stored under its case, nothing half-written; counts of what is there."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            def rows(sql: str) -> list:
                return list(c.execute(text(sql)))

            cases = {r.identifier_value: r.id for r in rows("SELECT id, identifier_value FROM cases")}
            for value, a in acked.items():
                assert cases.get(value) == a["case"], f"acknowledged {value} (case {a['case']}) is not stored"
            subs = {r.identifier_value: r.case_id for r in rows("SELECT case_id, identifier_value FROM submissions")}
            for value, a in acked.items():
                assert subs.get(value) == a["case"], f"acknowledged {value}: its submission is not stored"
            half = rows("""SELECT c.id FROM cases c WHERE
                               NOT EXISTS (SELECT 1 FROM submissions s WHERE s.case_id = c.id)
                            OR NOT EXISTS (SELECT 1 FROM determinations d WHERE d.case_id = c.id)
                            OR NOT EXISTS (SELECT 1 FROM events e WHERE e.case_id = c.id AND e.kind = 'submitted')""")
            assert not half, f"cases without their submission, determination or event: {half}"
            orphans = rows("""SELECT s.id FROM submissions s
                              WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.id = s.case_id)
                                 OR NOT EXISTS (SELECT 1 FROM determinations d WHERE d.submission_id = s.id)""")
            assert not orphans, f"submissions without a case or a determination: {orphans}"
            stray = rows("""SELECT d.id FROM determinations d WHERE NOT EXISTS
                                (SELECT 1 FROM submissions s WHERE s.id = d.submission_id AND s.case_id = d.case_id)""")
            assert not stray, f"determinations without their submission: {stray}"
            audited = {r.case_id: r.n for r in rows(
                "SELECT case_id, COUNT(*) AS n FROM audit_log WHERE action = 'case.submit' GROUP BY case_id")}
            assert audited == {cid: 1 for cid in cases.values()}, "each stored case has exactly one case.submit entry"
            return {"cases": len(cases), "submissions": len(subs)}
    finally:
        engine.dispose()


@pytest.mark.parametrize("url, workers", [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)], indirect=["url"])
def test_sigkill_mid_burst_loses_no_acknowledged_submission(store, tmp_path, request, workers):
    secret = _cli(store, "client", "add", "burst-provider", "--role", "provider",
                  "--organization", "org-burst").stdout.strip().splitlines()[-1]
    run = uuid.uuid4().hex[:8]
    bundles = _bundles(BURST, run)
    server = Server(store, tmp_path / "server.log", workers)
    try:
        server.start()
        token = _token(server.base, "burst-provider", secret)
        acked, failed, interrupted = _burst(server, token, bundles)
        assert server.proc.poll() is not None, "the server is still running after the SIGKILL"
    finally:
        server.kill()
        server.stop()
    assert len(acked) >= KILL_AFTER, f"only {len(acked)} acknowledged:\n{server.output()}"
    assert interrupted and failed > 0, "the SIGKILL came after the burst had finished"
    assert all(a["status"] == 201 for a in acked.values())

    counts = _check_store(store["url"], acked)
    assert len(acked) <= counts["cases"] <= len(bundles)
    verify = _cli(store, "audit", "verify", check=False)
    assert verify.returncode == 0, f"audit verify after the SIGKILL:\n{verify.stdout}\n{verify.stderr}"

    # the same store serves again
    again = Server(store, tmp_path / "server-again.log", workers)
    try:
        again.start()
        assert httpx.get(f"{again.base}/health", timeout=5).json()["status"] == "ok"
        token = _token(again.base, "burst-provider", secret)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        with httpx.Client(base_url=again.base, timeout=15) as client:
            for value in sorted(acked)[:5]:
                r = client.post("/fhir/Claim/$submit", content=bundles[value], headers=headers)
                assert r.status_code == 200, r.text
                assert r.headers["location"].rsplit("/", 1)[1] == acked[value]["case"]
                assert r.json() == acked[value]["response"]
                cr = client.get(f"/fhir/ClaimResponse/{acked[value]['case']}", headers=headers)
                assert cr.status_code == 200 and cr.json()["id"] == acked[value]["case"]
            # one the server never answered: stored once (if it committed) or accepted now
            lost = next(v for v in sorted(bundles) if v not in acked)
            r = client.post("/fhir/Claim/$submit", content=bundles[lost], headers=headers)
            assert r.status_code in (200, 201), r.text
            fresh = _bundles(1, run + "-after")
            r = client.post("/fhir/Claim/$submit", content=next(iter(fresh.values())), headers=headers)
            assert r.status_code == 201, r.text
    finally:
        again.stop()
    assert again.proc.returncode is not None
    _check_store(store["url"], acked)
    verify = _cli(store, "audit", "verify", check=False)
    assert verify.returncode == 0, f"audit verify after the restart:\n{verify.stdout}\n{verify.stderr}"
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[priorauth durability] {store['url'].split(':')[0]}, {workers} worker(s): {len(bundles)} fired, "
              f"{len(acked)} acknowledged before the SIGKILL, {failed} unanswered, {counts['cases']} stored", flush=True)
