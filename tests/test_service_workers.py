"""``priorauth serve --workers N`` as a real process tree: the supervisor hands each new connection to the worker
with the fewest open ones, replaces a worker that dies, and stops cleanly on SIGTERM. Connections are counted
per worker from ``/proc`` (Linux)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_service_durability import Server, _cli, _token, store  # noqa: F401 - the store fixture (SQLite here)

pytestmark = [pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="counts connections from /proc"),
              pytest.mark.parametrize("url", ["sqlite"], indirect=True)]


@pytest.fixture
def server(store, tmp_path):
    s = Server(store, tmp_path / "server.log", workers=2).start()
    yield s
    s.stop()


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing children running ``spawn_main``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmdline:
            out.append(int(entry.name))
    return sorted(out)


def _connections(pids: list[int], port: int) -> dict[int, int]:
    """Established connections to ``port`` held by each of ``pids``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    counts = {}
    for pid in pids:
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                n += 1
        counts[pid] = n
    return counts


def _open(server: Server, n: int) -> list[http.client.HTTPConnection]:
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        c.request("GET", "/health")
        r = c.getresponse()
        assert r.status == 200
        r.read()
        conns.append(c)
    return conns


def _settled(pids, port, want_total, timeout=5.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = _connections(pids, port)
        if sum(counts.values()) == want_total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def _client_ports(pid: int, port: int) -> set[int]:
    """The client-side ports of the connections to ``port`` that process ``pid`` holds."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[9] in held and int(f[1].split(":")[1], 16) == port and f[3] == "01":
            ports.add(int(f[2].split(":")[1], 16))
    return ports


def test_connections_are_spread_over_the_workers_and_rebalanced_as_they_close(server):
    pids = _workers(server.proc.pid)
    assert len(pids) == 2, server.output()
    conns = _open(server, 10)
    assert sorted(_settled(pids, server.port, 10).values()) == [5, 5]
    # close the five the first worker holds: the next four connections all go to it
    first = _client_ports(pids[0], server.port)
    assert len(first) == 5
    for c in [c for c in conns if c.sock.getsockname()[1] in first]:
        c.close()
    assert _settled(pids, server.port, 5) == {pids[0]: 0, pids[1]: 5}
    time.sleep(0.3)                                 # the worker's report of the closes reaches the supervisor
    more = _open(server, 4)
    assert _settled(pids, server.port, 9) == {pids[0]: 4, pids[1]: 5}
    for c in conns + more:
        c.close()


def test_a_submission_is_served_by_a_worker(server, store):
    secret = _cli(store, "client", "add", "w-provider", "--role", "provider",
                  "--organization", "org-w").stdout.strip().splitlines()[-1]
    token = _token(server.base, "w-provider", secret)
    body = (Path(__file__).resolve().parents[1] / "examples" / "fhir" / "eligible-flc-only.json").read_bytes()
    for _ in range(2):                              # a new connection each time: both workers, the same answer
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        c.request("POST", "/fhir/Claim/$submit", body=body,
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})
        r = c.getresponse()
        assert r.status in (200, 201), r.read()
        r.read()
        c.close()


def test_a_worker_that_dies_is_replaced(server):
    before = _workers(server.proc.pid)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _workers(server.proc.pid)
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"no replacement worker:\n{server.output()}")
    conns = _open(server, 4)                        # both serve (the new one once it is ready)
    assert "exited" in server.output() and "starting another" in server.output()
    for c in conns:
        c.close()


def test_sigterm_stops_the_supervisor_and_its_workers(server):
    pids = _workers(server.proc.pid)
    conn = _open(server, 1)[0]
    os.kill(server.proc.pid, signal.SIGTERM)        # the supervisor only: it stops the workers
    assert server.proc.wait(timeout=40) == 0, server.output()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert server.output().count("Finished server process") == 2
    conn.close()
    with pytest.raises(OSError):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        c.request("GET", "/health")
        c.getresponse()


def test_the_supervisor_going_away_stops_the_workers(server):
    pids = _workers(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)        # the workers see their channel close and shut down
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{p}").exists() for p in pids), subprocess.run(
        ["ps", "-o", "pid,ppid,stat,cmd", "-p", ",".join(map(str, pids))], capture_output=True, text=True).stdout
