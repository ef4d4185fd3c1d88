"""PAS request bundles parsed and evaluated per second on one core.

    .venv/bin/python bench/bench_fhir.py [--seconds 3] [BUNDLE.json ...]

It also prints where the time goes per bundle (parse, intake, evaluation) in thread CPU time.
Without arguments it measures the bundles written from the acceptance scenarios (../shared/scenarios), the
hand-written ones in examples/fhir and the bundles other senders wrote (../shared/pas). Each run parses the
JSON text, maps it to a Case and evaluates it with its full trace; "strict" adds validation of every resource
with the FHIR models; "orjson parse" is parsing the same texts with orjson alone, in the same run: the floor
any reader pays, and the figure parse+evaluate is compared with.
"""

from __future__ import annotations

import argparse
import glob
import json
import time

import orjson
from datetime import date
from pathlib import Path

from timing import one_core, rate

from priorauth.config import PayerConfig
from priorauth.determination import determine
from priorauth.fhir.pas_intake import case_from_bundle, parse_bundle_text
from priorauth.policies import default_policy

ROOT = Path(__file__).resolve().parents[1]


def scenario_bundles() -> list[str]:
    from priorauth.fhir.pas_build import bundle_from_case
    from priorauth.intake.casefile import load_case_file

    out = [json.dumps(bundle_from_case(load_case_file(p)))
           for p in sorted(glob.glob(str(ROOT.parent / "shared" / "scenarios" / "*.yaml")))]
    out += [Path(p).read_text() for p in sorted(glob.glob(str(ROOT / "examples" / "fhir" / "*.json")))]
    out += [Path(p).read_text() for p in sorted(glob.glob(str(ROOT.parent / "shared" / "pas" / "*.json")))]
    return out



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    texts = [Path(f).read_text() for f in args.files] if args.files else scenario_bundles()
    one_core()
    policy = default_policy()
    config = PayerConfig(policy_effective=date(2026, 12, 23))
    sizes = [len(json.loads(t).get("entry", [])) for t in texts]
    print(f"{len(texts)} PAS bundles ({min(sizes)}-{max(sizes)} entries); policy {policy.id}; one core")
    i = 0

    def run(strict: bool):
        def once():
            nonlocal i
            text = texts[i % len(texts)]
            i += 1
            determine(parse_bundle_text(text, "bench.json", strict=strict), policy, config)
        return once

    def parse_only():
        nonlocal i
        orjson.loads(texts[i % len(texts)])
        i += 1

    floor, n = rate(parse_only, args.seconds)
    print(f"{'orjson parse':15s} {floor:9.0f} bundles/s   ({n} runs, {1e6 / floor:.0f} us each)")
    for name, strict in (("parse+evaluate", False), ("strict", True)):
        r, n = rate(run(strict), args.seconds)
        print(f"{name:15s} {r:9.0f} bundles/s   ({n} runs, {1e6 / r:.0f} us each; {100 * r / floor:.1f}% of the "
              "orjson parse rate)")
    # where the time goes: the best of 15 passes over all bundles, in this thread's CPU time (not wall clock)
    cases = [case_from_bundle(orjson.loads(t), "bench.json") for t in texts]

    def per_bundle(fn) -> float:
        best = min(_thread_seconds(fn) for _ in range(15))
        return best / len(texts) * 1e6

    parse_us = per_bundle(lambda: [orjson.loads(t) for t in texts])
    intake_us = per_bundle(lambda: [case_from_bundle(orjson.loads(t), "bench.json") for t in texts]) - parse_us
    eval_us = per_bundle(lambda: [determine(c, policy, config) for c in cases])
    print(f"per bundle, thread time: parse {parse_us:.0f} us, intake {intake_us:.0f} us, evaluation {eval_us:.0f} us")


def _thread_seconds(fn) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


if __name__ == "__main__":
    main()
