"""Evaluations per second on one core: from a loaded case (full trace) and from case files on disk.

    .venv/bin/python bench/bench_evaluate.py [--seconds 3] [--entries 40] [CASE_FILE ...]

Three sets, measured in the same run: the case files given (default: the bundled examples), the shared
acceptance scenarios (../shared/scenarios, the public ones and the real-world records), and synthetic per-drug
histories of ``--entries`` therapy entries each (bench/histories.py: one entry per drug, infusions by date).
"loaded" evaluates an already-parsed Case (routing, every criterion with its trace and evidence, the
determination); "loaded+json" adds building the JSON contract; "files" reads, parses, validates and converts
each file and then evaluates it (for sets that are files).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from histories import per_drug_case
from timing import one_core, rate

from priorauth.determination import determine
from priorauth.intake.casefile import case_from_data, load_case_file
from priorauth.output import to_json
from priorauth.policies import default_policy

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "scenarios"


def measure(name: str, cases: list, files: list[str] | None, policy, seconds: float) -> None:
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

    runs = [("loaded", loaded), ("loaded+json", loaded_json)] + ([("files", from_files)] if files else [])
    for how, fn in runs:
        r, n = rate(fn, seconds)
        print(f"{name:28s} {how:12s} {r:8.0f} evaluations/s   ({n} runs, {1e6 / r:.0f} us each)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--entries", type=int, default=40, help="therapy entries in each synthetic per-drug history")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(str(ROOT / "examples" / "cases" / "*.yaml")) +
                                 glob.glob(str(ROOT / "examples" / "cases" / "*.json")))
    one_core()
    policy = default_policy()
    print(f"policy {policy.id} v{policy.version}; one core")
    measure(f"given files ({len(files)})", [load_case_file(f) for f in files], files, policy, args.seconds)
    public = sorted(glob.glob(str(SHARED / "*.yaml")))
    records = sorted(glob.glob(str(SHARED / "records" / "*.yaml")))
    if public:
        measure(f"shared scenarios ({len(public)})", [load_case_file(f) for f in public], public, policy, args.seconds)
    if records:
        measure(f"shared records ({len(records)})", [load_case_file(f) for f in records], records, policy, args.seconds)
    synthetic = [case_from_data(per_drug_case(args.entries, seed), "bench") for seed in range(20)]
    assert all(len(c.therapies) == args.entries for c in synthetic)
    measure(f"per-drug, {args.entries} entries (20)", synthetic, None, policy, args.seconds)


if __name__ == "__main__":
    main()
