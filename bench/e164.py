"""NumberSet (lazy blocks, bisection) against a Python set of every number expanded.

Workload: a provider serving 100 blocks of 1000 numbers plus 1000 single numbers
(101 000 numbers). Measures, in one run: building the set, membership lookups (half
hits, half misses, already-normalised strings as the proxy sees them), and memory.
Prints one JSON line last; ratios are NumberSet / baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from vipr.e164 import NumberBlock, NumberSet, parse_entry


def entries(rnd: random.Random) -> list[str]:
    out = [f"+1{rnd.randrange(200, 999)}{rnd.randrange(200, 999)}[0000-0999]" for _ in range(100)]
    out += [f"+44{rnd.randrange(10**9, 10**10)}" for _ in range(1000)]
    return out


def expand(items: list[str]) -> frozenset[str]:
    numbers: set[str] = set()
    for e in items:
        parsed = parse_entry(e)
        numbers.update(parsed if isinstance(parsed, NumberBlock) else (parsed,))
    return frozenset(numbers)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    keep = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del keep
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short run")
    args = ap.parse_args()
    rnd = random.Random(1)
    items = entries(rnd)
    repeat = 3 if args.quick else 9
    n_probes = 20_000 if args.quick else 200_000

    lazy = NumberSet(items)
    full = expand(items)
    assert len(lazy) == len(full)
    hits = rnd.sample(sorted(full), n_probes // 2)
    misses = [f"+1{rnd.randrange(10**9, 10**10)}" for _ in range(n_probes // 2)]
    probes = hits + misses
    rnd.shuffle(probes)
    assert sum(p in lazy for p in probes) == sum(p in full for p in probes)

    build_lazy = median_time(lambda: NumberSet(items), repeat)
    build_full = median_time(lambda: expand(items), repeat)
    look_lazy = median_time(lambda: sum(p in lazy for p in probes), repeat)
    look_full = median_time(lambda: sum(p in full for p in probes), repeat)
    mem_lazy = peak_bytes(lambda: NumberSet(items))
    mem_full = peak_bytes(lambda: expand(items))

    result = {
        "bench": "e164",
        "quick": args.quick,
        "numbers": len(full),
        "entries": len(items),
        "baseline": "frozenset of every number expanded",
        "build_ms": round(build_lazy * 1e3, 2),
        "build_baseline_ms": round(build_full * 1e3, 2),
        "build_ratio": round(build_full / build_lazy, 1),
        "lookups_per_s": round(n_probes / look_lazy),
        "lookups_baseline_per_s": round(n_probes / look_full),
        "lookup_ratio": round(look_full / look_lazy, 3),
        "peak_kib": round(mem_lazy / 1024, 1),
        "peak_baseline_kib": round(mem_full / 1024, 1),
        "memory_ratio": round(mem_full / mem_lazy, 1),
    }
    print(
        f"NumberSet of {len(full)} numbers: build {result['build_ms']} ms "
        f"({result['build_ratio']}x faster than expanding), {result['lookups_per_s']:,} "
        f"lookups/s ({result['lookup_ratio']}x the set's speed), {result['peak_kib']} KiB "
        f"({result['memory_ratio']}x less memory)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
