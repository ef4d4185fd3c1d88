"""CNS text reading (I.A.6): time and peak memory per text size, to show that the work grows linearly.

    .venv/bin/python bench/bench_cns.py [--sizes 1000,100000,1000000] [--kinds history,dense,run-on,negated] [--seed 7]

Texts are generated, deterministic for a seed:
- "history": problem-list entries, one a line; about 1 entry in 20 names a CNS condition in one of the context
  kinds (negated, preventive, family, uncertain, historical, present), with dates and doses that vary, so that
  the memo of repeated clauses does not hide the work;
- "dense": every sentence names a CNS condition (all different), the worst case for the pipeline;
- "run-on": one sentence without punctuation, a mention every 40 words (read in bounded windows);
- "negated": every clause denies CNS conditions ("No seizures, no stroke and no TIA"), a templated review of
  systems repeated.
Each text is read by a fresh reader (empty memos, its pipeline built beforehand); time is the wall time of one
read on one core, peak memory the tracemalloc peak of the same read by another fresh reader.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc

from timing import one_core

from priorauth.terminology import _read
from priorauth.terminology.cns import CnsReader

PLAIN = ["Essential hypertension on lisinopril {d} mg daily", "Type 2 diabetes mellitus, A1c {p}%",
         "Chronic kidney disease stage 3a, eGFR {n}", "Hyperlipidemia on atorvastatin {d} mg",
         "Osteoarthritis of both knees", "Appendectomy {y}", "GERD on omeprazole {d} mg", "Hypothyroidism",
         "Atrial fibrillation, CHA2DS2-VASc {s}", "Peripheral neuropathy from bortezomib, grade {s}",
         "Compression fracture T{s}, kyphoplasty {y}", "Herpes zoster {y}, on acyclovir prophylaxis"]
CNS = ["No history of seizures ({n})", "Levetiracetam {d} mg for seizure prophylaxis",
       "Family history of dementia (mother, age {n})", "Possible TIA {y}, work-up pending",
       "Remote stroke {y}, no residual deficit", "Seizure disorder on levetiracetam {d} mg",
       "Apixaban {s} mg for stroke prevention", "Denies stroke or TIA, visit {n}", "MRI brain {y} negative",
       "h/o CVA {y}", "Rule out CNS involvement, LP {y}", "Monitor for ICANS/seizures, day {n}"]


def fill(template: str, rng: random.Random) -> str:
    return template.format(d=rng.choice((5, 10, 20, 40, 250, 500, 750)), p=round(rng.uniform(5.5, 9.5), 1),
                           n=rng.randint(18, 99), y=rng.randint(1995, 2026), s=rng.randint(1, 9))


def history_text(size: int, rng: random.Random) -> str:
    lines, n = [], 0
    while n < size:
        line = fill(rng.choice(CNS if rng.random() < 0.05 else PLAIN), rng)
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines)[:size]


def dense_text(size: int, rng: random.Random) -> str:
    out, n = [], 0
    while n < size:
        s = fill(rng.choice(CNS), rng) + f", entry {len(out)}."
        out.append(s)
        n += len(s) + 1
    return " ".join(out)[:size]


def run_on_text(size: int, rng: random.Random) -> str:
    words, n, i = [], 0, 0
    while n < size:
        w = fill(rng.choice(("no seizures", "remote stroke {y}", "possible TIA", "seizure prophylaxis")), rng) \
            if i % 40 == 0 else rng.choice(("and", "the", "patient", "with", "noted", "on", "day", str(i)))
        words.append(w)
        n += len(w) + 1
        i += 1
    return " ".join(words)[:size]


def negated_text(size: int, rng: random.Random) -> str:
    """Negation-heavy: every clause denies CNS conditions, as a templated review of systems repeats it."""
    out, n = [], 0
    while n < size:
        s = fill(rng.choice(("No seizures, no stroke and no TIA (visit {n}).", "Denies headache, seizure or "
                             "stroke, day {n}.", "No CNS involvement; no history of seizures ({y}).",
                             "Negative for stroke, TIA or dementia on exam {s}.")), rng)
        out.append(s)
        n += len(s) + 1
    return " ".join(out)[:size]


KINDS = {"history": history_text, "dense": dense_text, "run-on": run_on_text, "negated": negated_text}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    one_core()
    cns = _read("conditions.yaml")["cns"]
    t0 = time.perf_counter()
    CnsReader(cns).text("no seizures")
    print(f"pipeline built in {(time.perf_counter() - t0) * 1000:.0f} ms (once per process); one core")
    print(f"{'text':8} {'size':>9} {'mentions':>9} {'time':>10} {'per KB':>10} {'peak memory':>12}")
    for kind, make in ((k, KINDS[k]) for k in args.kinds.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            text = make(size, random.Random(args.seed))
            reader = fresh(cns)
            t0 = time.perf_counter()
            found = reader.text(text)
            dt = time.perf_counter() - t0
            reader = fresh(cns)
            tracemalloc.start()
            reader.text(text)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"{kind:8} {len(text):>9,} {len(found):>9,} {dt * 1000:>8.1f} ms {dt * 1e6 / (len(text) / 1000):>7.0f} us"
                  f" {peak / 1e6:>9.1f} MB")


def fresh(cns: dict) -> CnsReader:
    """A reader with empty memos whose pipeline is built (outside the measurement)."""
    reader = CnsReader(cns)
    reader.negative_workup("MRI brain negative")
    return reader

if __name__ == "__main__":
    main()
