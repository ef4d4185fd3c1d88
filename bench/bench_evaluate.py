"""Evaluations per second on one core: from a loaded case (full trace) and from case files on disk.

    .venv/bin/python bench/bench_evaluate.py [--seconds 3] [CASE_FILE ...]

Prints one line per measurement. "loaded" evaluates an already-parsed Case (routing, every criterion with
its trace and evidence, the determination); "loaded+json" adds building the JSON contract; "files" reads,
parses, validates and converts each file and then evaluates it.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from timing import one_core, rate

from priorauth.determination import determine
from priorauth.intake.casefile import load_case_file
from priorauth.output import to_json
from priorauth.policies import default_policy

ROOT = Path(__file__).resolve().parents[1]



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(str(ROOT / "examples" / "cases" / "*.yaml")) + glob.glob(str(ROOT / "examples" / "cases" / "*.json")))
    one_core()
    policy = default_policy()
    cases = [load_case_file(f) for f in files]
    print(f"{len(files)} case files; policy {policy.id} v{policy.version}; one core")

    i = 0

    def loaded():
        nonlocal i
        determine(cases[i % len(cases)], policy)
        i += 1

    def loaded_json():
        nonlocal i
        to_json(determine(cases[i % len(cases)], policy))
        i += 1

    def from_files():
        nonlocal i
        determine(load_case_file(files[i % len(files)]), policy)
        i += 1

    for name, fn in (("loaded", loaded), ("loaded+json", loaded_json), ("files", from_files)):
        r, n = rate(fn, args.seconds)
        print(f"{name:12s} {r:10.0f} evaluations/s   ({n} runs, {1e6 / r:.0f} us each)")


if __name__ == "__main__":
    main()
