"""Evaluation rate of this build beside an earlier one, alternating, in the same run.

    .venv/bin/python bench/compare_builds.py [REV] [--rounds 5] [--seconds 1]

REV (default 2694bcd, the build before per-drug histories) is checked out in a temporary git worktree; each round
evaluates the shared public scenarios (those both builds can read) from loaded cases, once with that build's
sources and once with this one's, in separate processes pinned to one core. Time is the thread's CPU time, so
that time the machine's other tenants take (steal) does not count; each figure is the best of several passes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "scenarios"

_CHILD = r"""
import glob, json, sys, time
from priorauth.determination import determine
from priorauth.intake.casefile import load_case_file
from priorauth.policies import default_policy
files, seconds = json.loads(sys.argv[1]), float(sys.argv[2])
cases, readable = [], []
for name in files:
    try:
        cases.append(load_case_file(name))
        readable.append(name)
    except Exception:
        pass
policy = default_policy()
for c in cases:
    determine(c, policy)
best = float("inf")
for _ in range(7):
    n, t0 = 0, time.thread_time()
    while time.thread_time() - t0 < seconds / 7:
        for c in cases:
            determine(c, policy)
        n += len(cases)
    best = min(best, (time.thread_time() - t0) / n)
print(json.dumps({"readable": readable, "us": best * 1e6}))
"""


def _run(src: Path, files: list[str], seconds: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    cmd = [sys.executable, "-c", _CHILD, json.dumps(files), str(seconds)]
    if hasattr(os, "sched_setaffinity"):
        core = sorted(os.sched_getaffinity(0))[0]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                             preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    else:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rev", nargs="?", default="2694bcd")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per build per round")
    args = ap.parse_args()
    files = sorted(str(p) for p in SHARED.glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "build"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.rev], check=True)
        try:
            files = _run(tree / "src", files, 0.2)["readable"]       # the scenarios the earlier build reads
            print(f"{len(files)} shared public scenarios; {args.rev} against this checkout; one core, CPU time")
            old, new = [], []
            for k in range(args.rounds):
                old.append(_run(tree / "src", files, args.seconds)["us"])
                new.append(_run(ROOT / "src", files, args.seconds)["us"])
                print(f"round {k + 1}: {args.rev} {old[-1]:6.1f} us ({1e6 / old[-1]:5.0f}/s)   "
                      f"this {new[-1]:6.1f} us ({1e6 / new[-1]:5.0f}/s)")
            b_old, b_new = min(old), min(new)
            print(f"best: {args.rev} {1e6 / b_old:.0f} evaluations/s, this {1e6 / b_new:.0f} evaluations/s "
                  f"({(b_old / b_new - 1) * 100:+.1f}%)")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
