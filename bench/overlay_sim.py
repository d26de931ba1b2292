"""Internet-scale overlay figures from the real CHORD-RELOAD core in simulated time (issue 17).

N instances of `ChordProtocol` (vipr/reload/core/chord_protocol.py, the code the daemons run)
over the in-memory network of vipr/reload/sim/ (20 ms ± 5 ms per hop; no TLS, no signatures).
Per N: the ring (N joins, one arrival each 0.2 s; or, from `warm_from` on, a warm-started ring
with a sample of nodes joining through the protocol): messages per join and simulated time to a
correct ring; maintenance messages per node per minute; hops per lookup (mean, p99; Pings and a
walk over the tables) against the published Chord path length ½·log2 N (the baseline); lookup
success after 10/30/50 % of the nodes fail at once (60 s of repair, then numbers looked up under
N, COPY1N, COPY2N as `lookup` does); lookup success under churn (exponential sessions, median
1 h); records per node and max/mean skew for 10^8 numbers, computed from the ring. Full mode
adds N = 100,000 (warm ring, hops and load) when memory allows and fits hops against log2 N.
`--like-real` runs bench/overlay.py's timers and schedule at N = 16 and 64 instead. Phases are
timed in CPU seconds. Prints one JSON line last.

Data model (no storage is simulated): a number is stored under its three Resource-IDs, each on
the responsible peer and its two successors (replication, §10.4) as of before the failure; a
lookup finds it when the request lands on a live holder. Replication after the failure is not
modelled, so the failure figures are a lower bound. Under churn, holders are taken from the ring
of one minute before (replication moves copies to a new successor within that time).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import pickle
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from vipr.reload.core.node_api import ChordTimers
from vipr.reload.core.topology import to_int
from vipr.reload.sim.network import Probe, Simulation, load_skew
from vipr.reload.sim.tables import table_stats, walk_hops
from vipr.reload.wire.forwarding import resource_id

TIMERS = ChordTimers()  # RFC 6940 sample values: Update every 400 s, finger refresh every hour
SESSION_MEDIAN = 3600.0
WALK_KEYS = 2000  # lookups walked over the tables (no messages): hops with less noise


def holders(ring: list[int], key: int, copies: int = 3) -> set[int]:
    i = bisect.bisect_left(ring, key)
    return {ring[(i + k) % len(ring)] for k in range(min(copies, len(ring)))}


def names_of(number: int) -> list[int]:
    n = f"+1{number:010d}"
    return [to_int(resource_id(x)) for x in (n, "COPY1" + n, "COPY2" + n)]


def cpu_s() -> float:
    """CPU seconds of this process (wall time on a shared machine says little)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def clone(sim: Simulation) -> Simulation:
    """An independent copy of a simulation (pickle: several times faster than deepcopy)."""
    return cast(Simulation, pickle.loads(pickle.dumps(sim, protocol=pickle.HIGHEST_PROTOCOL)))


def arrivals(sim: Simulation, count: int) -> dict[str, float]:
    """`count` nodes arrive one per 0.2 s and join through the protocol; then the ring is
    checked every simulated second until every successor and predecessor is the true one."""
    first = sim.now
    msgs = sim.messages
    new = []
    for _ in range(count):
        new.append(sim.add_node())
        sim.run(sim.now + 0.2)
    last = sim.now
    msgs = sim.messages - msgs
    while sim.ring_correct() < 1.0 and sim.now - last < 3600:
        sim.run(sim.now + 1.0)
    done = [nd.join_done - nd.join_started for nd in new if nd.join_done is not None]
    return {"joins": count, "joined": len(done), "msgs_per_join": round(msgs / count, 1),
            "join_s_mean": round(statistics.mean(done), 3) if done else -1.0,
            "ring_stable_after_last_join_s": round(sim.now - last, 1),
            "ring_stable_from_first_arrival_s": round(sim.now - first, 1)}


def build(n: int, seed: int, warm: int) -> tuple[Simulation, dict[str, Any]]:
    """Every node joins (`warm` 0), or a warm ring of n - `warm` and `warm` joins into it."""
    sim = Simulation(timers=TIMERS, seed=seed)
    out: dict[str, Any] = {"ring_built_by": "joins" if not warm else
                           f"warm start of {n - warm}, then {warm} joins"}
    if warm:
        sim.warm_start(n - warm)
    out.update(arrivals(sim, warm if warm else n))
    return sim, out


def lookups(sim: Simulation, count: int) -> list[Probe]:
    alive = sim.alive_ids()
    probes = [sim.lookup(sim.rng.choice(alive), sim.rng.getrandbits(128)) for _ in range(count)]
    sim.run(sim.now + 10.0)
    return probes


def find_numbers(sim: Simulation, numbers: list[int], held: dict[int, set[int]]) -> float:
    """Share of `numbers` found: N first, then COPY1N, COPY2N (each on a live holder)."""
    alive = sim.alive_ids()
    pending = {x: names_of(x) for x in numbers}
    found = 0
    for _attempt in range(3):
        probes = {x: sim.lookup(sim.rng.choice(alive), ids.pop(0)) for x, ids in pending.items()}
        sim.run(sim.now + 10.0)
        for x, p in probes.items():
            if p.node is not None and to_int(p.node) in held[p.key]:
                found += 1
                del pending[x]
    return found / len(numbers)


def mass_failure(sim: Simulation, share: float, numbers: list[int]) -> float:
    """`share` of the nodes of `sim` (a copy: it is changed) crash at once; 60 s of repair."""
    ring = sorted(to_int(x) for x in sim.alive_ids())
    held = {k: holders(ring, k) for x in numbers for k in names_of(x)}
    victims = sim.rng.sample(sim.alive_ids(), int(share * len(ring)))
    for v in victims:
        sim.kill(v)
    sim.run(sim.now + 60.0)
    alive = {to_int(x) for x in sim.alive_ids()}
    held = {k: h & alive for k, h in held.items()}
    return find_numbers(sim, numbers, held)


def churn(sim: Simulation, duration: float, numbers: list[int]) -> dict[str, float]:
    """Exponential sessions (median 1 h), arrivals keep N; lookups every minute."""
    rate = math.log(2) / SESSION_MEDIAN  # per node per second
    n = len(sim.alive_ids())
    ok = total = 0.0
    died = born = 0
    snapshot = sorted(to_int(x) for x in sim.alive_ids())
    t_end = sim.now + duration
    while sim.now < t_end - 1e-6:
        step = min(60.0, t_end - sim.now)
        # kills and arrivals spread over the minute, not all at its start
        events = [(sim.rng.uniform(0, step), True) for _ in range(_poisson(sim, n * rate * step))]
        events += [(sim.rng.uniform(0, step), False)
                   for _ in range(_poisson(sim, n * rate * step))]
        t0 = sim.now
        for at, kill in sorted(events):
            sim.run(t0 + at)
            if kill:
                sim.kill(sim.rng.choice(sim.alive_ids()))
                died += 1
            else:
                sim.add_node()
                born += 1
        sim.run(t0 + step)
        ring_then = snapshot
        snapshot = sorted(to_int(x) for x in sim.alive_ids())
        alive = set(snapshot)
        held = {}
        for k in (k for x in numbers for k in names_of(x)):
            survivors = holders(ring_then, k) & alive
            # a surviving copy reaches the current owner by replication (§10.4)
            held[k] = survivors | holders(snapshot, k, 1) if survivors else survivors
        share = find_numbers(sim, numbers, held)
        ok += share * len(numbers)
        total += len(numbers)
    return {"found_under_churn": round(ok / total, 4), "churn_lookups": int(total),
            "churn_lost": round(total - ok), "churn_minutes": round(duration / 60, 1),
            "churn_departures": died, "churn_arrivals": born}


def _poisson(sim: Simulation, lam: float) -> int:
    # Knuth's method; lam is small (a few events per minute)
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= sim.rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(frozen=True)
class Mode:
    """How much of each phase a row runs (quick and full)."""

    warm_from: int  # N at or above which the ring is warm-started (see `Simulation.warm_start`)
    warm_joins: int  # nodes joined through the protocol into a warm ring
    steady_min: float
    probes: int
    numbers: int
    churn_min: dict[int, float]  # by N; default the largest key at or below N


QUICK = Mode(warm_from=1000, warm_joins=40, steady_min=25.0, probes=500, numbers=200,
             churn_min={0: 20.0, 5000: 3.0})
FULL = Mode(warm_from=5000, warm_joins=200, steady_min=25.0, probes=2000, numbers=1000,
            churn_min={0: 60.0, 5000: 20.0})


def row(n: int, mode: Mode, seed: int, hops_only: bool = False,
        shares: tuple[float, ...] = (0.1, 0.3, 0.5), churn_min: float | None = None,
        fail_only: bool = False) -> dict[str, Any]:
    """One N; `hops_only`: a warm ring, its lookups and load (no joins, failures, churn)."""
    t0 = time.monotonic()
    phase: dict[str, float] = {}
    last = [cpu_s()]

    def lap(name: str) -> None:
        now = cpu_s()
        phase[name] = round(now - last[0], 1)
        last[0] = now
        print(f"# N={n}: {name} {phase[name]} CPU s", file=sys.stderr, flush=True)

    warm = mode.warm_joins if n >= mode.warm_from else 0
    if fail_only:  # one experiment per process (runs side by side on a shared machine)
        out = {"n": n}
        numbers = list(range(mode.numbers))
        for share in shares:
            base = Simulation(timers=TIMERS, seed=seed)
            base.warm_start(n)
            base.run(base.now + 1.0)
            out[f"found_after_{int(share * 100)}pct_fail"] = round(
                mass_failure(base, share, numbers), 4)
            lap(f"fail_{int(share * 100)} {out}")
        out["cpu_s_by_phase"] = phase
        return out
    if hops_only:
        sim = Simulation(timers=TIMERS, seed=seed)
        sim.warm_start(n)
        out: dict[str, Any] = {"ring_built_by": f"warm start of {n} (hops and load only)"}
    else:
        sim, out = build(n, seed, warm)
    lap("build")
    out["n"] = n
    if hops_only:
        return _lookups_and_load(sim, out, mode, lap, t0, phase)
    # steady state: past 2 update intervals, so unused links are pruned as in the daemons
    sim.messages = 0
    minutes = mode.steady_min if not warm else 8.0  # a warm ring has no link to prune
    sim.run(sim.now + minutes * 60)
    out["maint_msgs_per_node_min"] = round(sim.messages / n / minutes, 2)
    out["steady_minutes"] = minutes
    lap("steady")
    _lookups_and_load(sim, out, mode, lap, t0, phase, final=False)
    print(f"# N={n}: {json.dumps(out)}", file=sys.stderr, flush=True)
    numbers = list(range(mode.numbers))
    for share in shares:
        if warm:  # a copy of 10^4 nodes costs more than a new warm ring of the same ids
            base = Simulation(timers=TIMERS, seed=seed)
            base.warm_start(n)
            base.run(base.now + 1.0)
        else:
            base = clone(sim)
        out[f"found_after_{int(share * 100)}pct_fail"] = round(
            mass_failure(base, share, numbers), 4)
        lap(f"fail_{int(share * 100)} {out[f'found_after_{int(share * 100)}pct_fail']}")
    if churn_min is None:
        churn_min = mode.churn_min[max(k for k in mode.churn_min if k <= n)]
    if churn_min:
        out.update(churn(sim, churn_min * 60.0, numbers))
    lap(f"churn {out.get('found_under_churn')}")
    out["events"] = sim.events
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["cpu_s_by_phase"] = phase
    print(f"# N={n}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def _lookups_and_load(sim: Simulation, out: dict[str, Any], mode: Mode,
                      lap: Callable[[str], None], t0: float, phase: dict[str, float],
                      final: bool = True) -> dict[str, Any]:
    probes = lookups(sim, mode.probes)
    hops = sorted(p.hops for p in probes if p.node is not None)
    ring = sorted(to_int(x) for x in sim.alive_ids())
    correct = sum(p.node is not None and to_int(p.node) == sim.owner(p.key, ring)
                  for p in probes)
    peers = {x: sim.nodes[x].protocol for x in sim.alive_ids()}
    alive = list(peers)
    walk = [walk_hops(peers, sim.rng.choice(alive), sim.rng.getrandbits(128))
            for _ in range(WALK_KEYS)]
    walked = [h for h in walk if h is not None]
    out.update({"hops_mean": round(statistics.mean(hops), 3),
                "hops_p99": hops[min(len(hops) - 1, int(0.99 * len(hops)))],
                "hops_walk_mean": round(statistics.mean(walked), 3),
                "hops_walk_p99": sorted(walked)[int(0.99 * len(walked))],
                "half_log2_n": round(0.5 * math.log2(len(ring)), 3),
                "lookup_ok": round(correct / len(probes), 4), **table_stats(peers)})
    out.update(load_skew(ring, 10**8))
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    lap("lookups")
    if final:
        out["wall_s"] = round(time.monotonic() - t0, 1)
        out["cpu_s_by_phase"] = phase
        print(f"# N={out['n']}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return out


def like_real(n: int, seed: int) -> dict[str, Any]:
    """bench/overlay.py's schedule in simulated time, for comparing hops with real processes:
    its timers, one join after the other (each waits for the previous to finish), its settle
    time, then hops walked over the tables for 2,000 random keys, 30 Ping probes to its
    numbers' Resource-IDs and the table state — measured by the same code as there."""
    import random as _random

    from overlay import SETTLE_S  # bench/overlay.py
    from overlay import TIMERS as BENCH_TIMERS

    from vipr.reload.wire.vipr_kind import resource_ids

    sim = Simulation(timers=BENCH_TIMERS, seed=seed)
    for _ in range(n):
        nd = sim.add_node()
        t_end = sim.now + 60.0
        while nd.join_done is None and sim.now < t_end:  # the bench awaits each join
            sim.run(sim.now + 0.01)
    join_msgs, join_connects, join_time = sim.messages, sim.connects, sim.now
    sim.run(sim.now + SETTLE_S)
    peers = {x: sim.nodes[x].protocol for x in sim.alive_ids()}
    alive = list(peers)
    walk = [walk_hops(peers, sim.rng.choice(alive), sim.rng.getrandbits(128))
            for _ in range(WALK_KEYS)]
    rnd = _random.Random(n)
    numbers = [f"+1408{rnd.randrange(10**7):07d}" for _ in range(30)]
    probes = [sim.lookup(sim.rng.choice(alive), to_int(resource_ids(x)[0])) for x in numbers]
    sim.run(sim.now + 5.0)
    walked = [h for h in walk if h is not None]
    return {"n": n, "hops_walk_random_keys": round(statistics.mean(walked), 3),
            "walk_dropped": len(walk) - len(walked),
            "hops_probe_numbers": round(statistics.mean(p.hops for p in probes), 3),
            "join_all_s": round(join_time, 1), "join_messages": join_msgs,
            "join_connects": join_connects,
            "half_log2_n": round(0.5 * math.log2(n), 3), **table_stats(peers)}


def extrapolate(rows: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Least-squares line hops = a + b·log2 N through the rows, evaluated at `n`."""
    xs = [math.log2(r["n"]) for r in rows]
    ys = [r["hops_mean"] for r in rows]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    a = my - b * mx
    return {"n": n, "hops_mean_fit": round(a + b * math.log2(n), 2), "slope_per_log2n": round(b, 3),
            "half_log2_n": round(0.5 * math.log2(n), 3), "fit_from_n": [r["n"] for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, action="append", help="network sizes (default 1000, 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--big", type=int, default=100000,
                    help="full mode: this N too, if it fits in --max-rss-gb (else extrapolated)")
    ap.add_argument("--max-rss-gb", type=float, default=8.0)
    ap.add_argument("--fail", type=float, action="append",
                    help="mass-failure shares to run (default 0.1, 0.3, 0.5; 0: none)")
    ap.add_argument("--fail-only", action="store_true",
                    help="only the mass failures (one process per share on a shared machine)")
    ap.add_argument("--hops-only", action="store_true",
                    help="warm rings, hops and load only (what full mode runs at --big)")
    ap.add_argument("--churn-min", type=float, help="simulated minutes of churn (0: none)")
    ap.add_argument("--like-real", action="store_true",
                    help="N = 16 and 64 on bench/overlay.py's schedule and timers (hops check)")
    args = ap.parse_args()
    if args.like_real:
        rows = [like_real(n, args.seed) for n in (args.n or [16, 64])]
        print(json.dumps({"bench": "overlay_sim", "mode": "like_real", "rows": rows}))
        return
    mode = QUICK if args.quick else FULL
    ns = args.n or [1000, 10000]
    t0 = time.monotonic()
    shares = tuple(x for x in args.fail or (0.1, 0.3, 0.5) if x > 0)  # --fail 0: none
    rows = [row(n, mode, args.seed, shares=shares, churn_min=args.churn_min,
                fail_only=args.fail_only, hops_only=args.hops_only) for n in ns]
    if args.fail_only:
        print(json.dumps({"bench": "overlay_sim", "mode": "fail_only", "rows": rows}))
        return
    ratios = [round(r["hops_mean"] / r["half_log2_n"], 3) for r in rows]
    result: dict[str, Any] = {
        "bench": "overlay_sim", "mode": "quick" if args.quick else "full",
        "baseline": "half_log2_n (Chord's mean path length, Stoica et al. 2001)",
        "rows": rows, "hops_over_baseline": ratios,
        "hops_within_target": all(r["hops_mean"] <= r["half_log2_n"] + 0.2 for r in rows),
    }
    if args.quick and args.big not in ns:
        result["not_run"] = (f"N = {args.big}: full mode only (a warm ring, hops and load); "
                             "`extrapolated` fits hops against log2 N through the rows")
    if not args.quick and args.big and args.big not in ns:
        # about 6 kB per node in a warm ring (measured: 63 MB pickled at N = 10^4, ~3x live)
        need_gb = args.big * 20e3 / 1e9
        if need_gb <= args.max_rss_gb:
            rows.append(row(args.big, mode, args.seed, hops_only=True))
            result["hops_over_baseline"].append(
                round(rows[-1]["hops_mean"] / rows[-1]["half_log2_n"], 3))
        else:
            result["not_run"] = f"N = {args.big}: needs ~{need_gb:.0f} GB (> --max-rss-gb)"
    if len(rows) >= 2 and max(r["n"] for r in rows) < args.big:
        result["extrapolated"] = extrapolate(rows, args.big)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    result["cpu_s"] = round(cpu_s(), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
