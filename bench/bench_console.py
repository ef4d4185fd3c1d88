"""The reviewer console's queue page with many open cases: time to answer GET /console/ (signed in) on PostgreSQL.

    .venv/bin/python bench/bench_console.py [--cases 10000] [--rounds 40] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

What one run does: a fresh database ``priorauth_bench_console_<random>`` (dropped at the end) migrated to the
current schema; ``--cases`` requests submitted through the service as a provider would (each one of the
bundled example PAS Bundles under its own identifier, evaluated and stored with its determination, event and
audit entry; one a minute on the service's clock, so the due times spread); a reviewer account signed in. Then
``--rounds`` requests of each queue view (the default view, a search by member id, overdue only, one status and
line of business) through the ASGI app in this process (FastAPI's TestClient: the whole app, the session check
and the database reads included; no socket), and the median, 95th percentile and worst wall time of each.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()

    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = f"priorauth_bench_console_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        run(make_url(args.pg).set(database=name).render_as_string(hide_password=False), args)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2027, 1, 12, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.at


def run(url: str, args) -> None:
    import re

    from fastapi.testclient import TestClient

    from priorauth.config import PayerConfig
    from priorauth.service import ServiceSettings, create_app
    from priorauth.service.auth import Principal
    from priorauth.store import Actor

    clock = Clock()
    settings = ServiceSettings(database_url=url, signing_key=b"bench-signing-key-" * 3, now=clock,
                               config=PayerConfig(policy_effective=date(2026, 12, 23)), deliver_notifications=False)
    app = create_app(settings)
    svc, store = app.state.service, app.state.store
    bundles = [json.loads(p.read_text()) for p in sorted((ROOT / "examples" / "fhir").glob("*.json"))]
    provider = Principal("bench", "provider", "org-bench")
    t0 = time.perf_counter()
    members = []
    for i in range(args.cases):
        b = copy.deepcopy(bundles[i % len(bundles)])
        b["identifier"] = {**b.get("identifier", {}), "value": f"BENCH-{i:06d}"}
        done = svc.submit(b, json.dumps(b), provider)
        members.append(done.result.case.member_id)
        clock.at += timedelta(minutes=1)
    loaded = time.perf_counter() - t0
    open_cases = sum(n for s, n in store.status_counts().items() if s in ("pended", "pending_information",
                                                                          "appealed"))
    print(f"{args.cases:,} requests submitted in {loaded:.0f} s; {open_cases:,} open cases in the store")
    store.add_user("bench.reviewer", "bench password 123", role="reviewer", npi="1234567893",
                   specialty="Pharmacist", credentials="PharmD", actor=Actor("bench", "admin"))
    clock.at += timedelta(days=3)          # some are overdue by now
    client = TestClient(app)
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/console/login", data={"csrf": token, "name": "bench.reviewer", "password": "bench password 123"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    member = next(m for m in members if m)
    views = {"default view (earliest due 100 of all open)": {},
             f"search by member id ({member[:6]}...)": {"q": member[:6]},
             "overdue only": {"overdue": 1},
             "pended, commercial": {"status": "pended", "lob": "commercial"}}
    print(f"{'view':48} {'median':>9} {'p95':>9} {'worst':>9}  shown / matching")
    for label, params in views.items():
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            r = client.get("/console/", params=params)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and "Review queue" in r.text, "not signed in"
        times.sort()
        matching = re.search(r"(\d+) open cases? match", r.text)
        shown = r.text.count('href="/console/cases/')
        print(f"{label:48} {statistics.median(times):>7.1f} ms {times[int(len(times) * 0.95) - 1]:>6.1f} ms "
              f"{times[-1]:>6.1f} ms  {shown} / {matching.group(1) if matching else '?'}")
    store.close()


if __name__ == "__main__":
    main()
