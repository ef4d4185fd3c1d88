"""Product-name matching: time per call and per byte for names of 1 KB to 1 MB, and for a realistic mix.

    .venv/bin/python bench/bench_matching.py [--seconds 2]

The normalizer makes single passes over the text, so the time per byte stays flat as names grow (linear
growth); a name longer than 256 characters is never memoized, so every call below on the long names does the
whole work. "mix" resolves the names the acceptance records and a medication list write, cold (the memo
cleared before every round) and warm (answers memoized, as in a running service).
"""

from __future__ import annotations

import argparse
import time

from timing import one_core, rate

from priorauth.terminology import load_terminology

MIX = [
    "D-VRd", "Dara-Vd", "Elo-Pd", "Isa-Kd", "VCd", "VRd (bortezomib, lenalidomide, dexamethasone)", "KRd", "DPd",
    "KCd", "SVd", "PVd", "DRd", "bortezomib SQ", "len", "dex", "Darzalex Faspro", "pom", "PF-06863135", "carfilz",
    "cy", "dexamethasone PO", "talquetamab-tgvs", "arlocabtagene autoleucel", "XYZ-4417", "anti-BCMA XYZ-4417",
    "lisinopril 10 mg tablet", "metformin ER 500 mg", "atorvastatin", "acyclovir 400 mg PO BID", "Bactrim DS",
    "aspirin 81 mg", "apixaban 2.5 mg", "zoledronic acid 4 mg IV", "levetiracetam", "ondansetron 8 mg ODT",
    "BVd", "BVd (bendamustine, bortezomib, dexamethasone)", "Revlimid 25 mg capsules", "anito-cel", "KITE-772",
]

SIZES = [1_000, 10_000, 100_000, 1_000_000]


def shapes(size: int) -> dict[str, str]:
    """Names of about ``size`` bytes: words nothing matches, a drug with its strengths repeated, a regimen with a
    long list in parentheses, unclosed parentheses."""
    return {
        "unrecognized words": ("xyzzy quux " * (size // 11 + 1))[:size],
        "drug + strengths": "bortezomib " + ("1.3 mg/m2 " * (size // 10 + 1))[:size - 11],
        "acronym (drug list)": "VRd (" + ("bortezomib, lenalidomide, dexamethasone, " * (size // 41 + 1))[:size - 6] + ")",
        "unclosed parentheses": ("(" * (size - 10)) + "bortezomib",
    }


def per_call(fn, size: int) -> float:
    """Seconds per call, the best of a few rounds."""
    rounds = max(3, min(200, 2_000_000 // size))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    one_core()
    term = load_terminology()
    vocab = term.vocabulary

    print("long names (never memoized): time per call and per byte")
    print(f"  {'shape':24} {'bytes':>9} {'ms/call':>10} {'ns/byte':>9}  result")
    for shape in shapes(1000):
        for size in SIZES:
            name = shapes(size)[shape]
            r = term.resolve(name)
            t = per_call(lambda: term.resolve(name), len(name))
            print(f"  {shape:24} {len(name):>9,} {t * 1e3:>10.3f} {t / len(name) * 1e9:>9.1f}  {r.kind}")

    def cold() -> None:
        vocab._memo.clear()
        for name in MIX:
            term.resolve(name)

    def warm() -> None:
        for name in MIX:
            term.resolve(name)

    per_s, _ = rate(cold, args.seconds)
    print(f"mix of {len(MIX)} record names, cold: {1e6 / (per_s * len(MIX)):.1f} us/name")
    per_s, _ = rate(warm, args.seconds)
    print(f"mix of {len(MIX)} record names, warm (memo): {1e6 / (per_s * len(MIX)):.2f} us/name")
    unresolved = [n for n in MIX if not term.resolve(n).recognized]
    print(f"  not resolved in the mix (by design): {', '.join(unresolved)}")


if __name__ == "__main__":
    main()
