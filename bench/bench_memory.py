"""Memory across many distinct large inputs: the memos priorauth keeps (CNS texts and pieces, product names,
regimen readings, dates, units) are bounded, so what one process holds levels off however many distinct texts
it reads.

    .venv/bin/python bench/bench_memory.py [--texts 1000] [--size 20000] [--seed 7]

Each round reads one distinct text (the "dense" CNS text of bench_cns, every sentence naming a CNS condition with
different dates and numbers) and, with it, distinct product names, dates and unit strings, and evaluates a case
with distinct regimen names and a history entry of that text, as a stream of different requests would. The Python heap still held (tracemalloc, after the
round's own objects are gone) is printed every tenth of the run: it must level off, not grow with the count.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from bench_cns import dense_text
from timing import one_core

from datetime import date

from priorauth.config import PayerConfig
from priorauth.determination import determine
from priorauth.clinical.units import UnitError, factor
from priorauth.fhir.pas_intake.fhirjson import _parse_date
from priorauth.intake.casefile import case_from_data
from priorauth.policies import default_policy
from priorauth.terminology import load_terminology

POLICY = default_policy()
CONFIG = PayerConfig(policy_effective=date(2026, 12, 23))


def one_round(i: int, size: int, rng: random.Random, term) -> None:
    text = dense_text(size, rng)
    term.cns_text(text)                                             # CNS mentions in context
    term.negative_workup(text[: size // 4])
    for k in range(20):                                             # distinct product names (long and short)
        term.resolve(f"investigational agent {i}-{k} " + "x" * rng.randint(0, 300))
    _parse_date(f"2027-01-{1 + i % 28:02d}T{i % 24:02d}:{k:02d}:00.{i:06d}+00:00")
    _parse_date("2027-01-01" + " " * rng.randint(0, 2000))         # not a date; never kept
    try:
        factor(f"mg/{i}dL" + "x" * rng.randint(0, 200), "g/dL")    # not units; never kept
    except UnitError:
        pass
    data = {"id": f"M-{i}", "request": {"received": "2027-01-11", "drug": "anitocabtagene autoleucel",
                                        "diagnoses": ["C90.02"]},
            "member": {"line_of_business": "medicaid"}, "history": [{"text": text[:3000]}],
            "therapies": [{"drugs": [f"agent-{i}-{k}" + "y" * rng.randint(0, 400), "dexamethasone"],
                           "start": "2021-03-01", "end": "2021-07-15"} for k in range(4)]}
    determine(case_from_data(data, "bench"), POLICY, CONFIG)        # the whole evaluation, its memos included


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    one_core()
    term = load_terminology()
    rng = random.Random(args.seed)
    one_round(-1, 1000, rng, term)                                  # the pipeline is built before measuring
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step = max(1, args.texts // 10)
    t0 = time.perf_counter()
    print(f"{args.texts} distinct texts of {args.size:,} characters; one core")
    print(f"{'texts':>6} {'heap held':>10} {'peak':>10} {'seconds':>8}")
    for i in range(args.texts):
        one_round(i, args.size, rng, term)
        if (i + 1) % step == 0:
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            print(f"{i + 1:>6} {(current - base) / 1e6:>8.1f} MB {(peak - base) / 1e6:>8.1f} MB "
                  f"{time.perf_counter() - t0:>8.1f}")
    tracemalloc.stop()


if __name__ == "__main__":
    main()
