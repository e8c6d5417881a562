"""Our scaling policy against KEDA's Temporal scaler, side by side on the same traces.

A trace-driven simulation (``docpipe_operator.simulation``): task arrivals and
service times, pods that take time to start and have ``concurrency`` slots,
and the statistics Temporal reports (approximate backlog count and age, 30 s
add and dispatch rates, refreshed every ~6 s). Both autoscalers see only
those statistics:

* docpipe: ``scaling.decide`` every 15 s (the operator's default poll), with
  the pool's default knobs from ``docpipe_operator.spec``;
* KEDA: ``ceil(backlog / targetQueueSize)`` every 30 s, down only to the
  highest desire of the last 300 s (the HPA's default stabilisation), min/max
  clamps, and for the GPU pool ``minReplicaCount: 0`` with a 300 s cooldown.

Per trace and policy it prints the backlog age tasks lived through (p50, p95,
max of each task's wait before it starts), worker-seconds (pod-seconds billed,
starting and draining pods included), the peak replica count, scale direction
changes (in all and per 5 minutes), busy-pool scale-downs (a scale-down while
every slot of the ready pods was busy), ``lost`` task attempts (still running
when their pod's 30 s graceful shutdown ran out; Temporal retries them),
tasks ``done`` and still ``waiting`` at the end, and our figures divided by
KEDA's. Goals: p95 age <= 0.5x KEDA's at <= 0.8x its worker-seconds, no
busy-pool scale-downs, <= 1 direction change per 5 minutes on the noisy trace.
A goal a trace misses is printed as NOT MET.

The last line sums up the worst trace for each figure:
``p95_age_ratio=<x> worker_seconds_ratio=<y> busy_scaledowns=<n> flips_per_5min=<z>``.

Deterministic (seeded), stdlib + numpy. Usage: python bench/autoscale_sim.py [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from docpipe_operator.scaling import ScalingKnobs
from docpipe_operator.simulation import (
    DocpipeAutoscaler,
    KedaAutoscaler,
    RunResult,
    Task,
    simulate,
)
from docpipe_operator.spec import pool_knobs as spec_pool_knobs

GOAL_AGE_RATIO = 0.5
GOAL_WORKER_RATIO = 0.8
GOAL_FLIPS_PER_5MIN = 1.0
KEDA_POLL_S = 30.0
KEDA_COOLDOWN_S = 300.0


def pool_knobs(kind: str, **overrides: float) -> tuple[ScalingKnobs, float]:
    """The pool's default knobs (as the CRD fills them in) and its poll interval."""
    return spec_pool_knobs(kind, {"scaling": overrides})


@dataclass(frozen=True)
class Trace:
    name: str
    description: str
    tasks: list[Task]
    horizon_s: float
    knobs: ScalingKnobs
    poll_s: float
    startup_s: float
    keda_min_replicas: int
    initial_replicas: int
    flips_goal: bool = False
    """Whether the <= 1 direction change per 5 minutes goal applies (the noisy trace)."""


def poisson(
    rng: np.random.Generator, rate: Callable[[float], float], peak: float, start: float, end: float
) -> list[float]:
    """Arrival times of a Poisson process with time-varying ``rate`` (thinning)."""
    times, t = [], start
    while True:
        t += rng.exponential(1.0 / peak)
        if t >= end:
            return times
        if rng.random() * peak < rate(t):
            times.append(t)


def durations(rng: np.random.Generator, n: int, mean: float, sigma: float) -> np.ndarray:
    """Lognormal service times with the given mean."""
    return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)


def make_tasks(
    rng: np.random.Generator, arrivals: list[float], mean: float, sigma: float
) -> list[Task]:
    arrivals = sorted(arrivals)
    return [
        Task(float(a), float(d))
        for a, d in zip(arrivals, durations(rng, len(arrivals), mean, sigma), strict=True)
    ]


def burst(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    knobs, poll = pool_knobs("cpu")
    horizon = 2700.0
    arrivals = poisson(rng, lambda t: 0.4, 0.4, 0, horizon)
    arrivals += poisson(rng, lambda t: 10.0, 10.0, 600, 780)  # a 3-minute surge
    arrivals += list(1500 + rng.uniform(0, 2, 300))  # a folder of 300 documents at once
    return Trace(
        "burst",
        "cpu pool; 0.4 tasks/s, a 10/s surge for 3 min at 10 min, 300 at once at 25 min; "
        "tasks ~5 s; pods start in ~30 s",
        make_tasks(rng, arrivals, 5.0, 0.5),
        horizon,
        knobs,
        poll,
        30.0,
        knobs.min_replicas,
        knobs.min_replicas,
    )


def diurnal(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    knobs, poll = pool_knobs("cpu")
    horizon = 3 * 3600.0

    def rate(t: float) -> float:
        return 0.3 + 11.7 * math.sin(math.pi * t / horizon) ** 2

    return Trace(
        "diurnal",
        "cpu pool; a day squeezed into 3 h: 0.3 -> 12 -> 0.3 tasks/s (sin^2); tasks ~5 s",
        make_tasks(rng, poisson(rng, rate, 12.0, 0, horizon), 5.0, 0.5),
        horizon,
        knobs,
        poll,
        30.0,
        knobs.min_replicas,
        knobs.min_replicas,
    )


def fan_out(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    # Long activities: taskSeconds set to their typical duration, as docs/scaling.md says.
    knobs, poll = pool_knobs("cpu", taskSeconds=480)
    horizon = 4800.0
    arrivals: list[float] = []
    for start in (60.0, 1260.0, 2460.0, 3660.0):  # one workflow fans out 64 activities each
        arrivals += list(start + rng.uniform(0, 1, 64))
    return Trace(
        "fan-out",
        "cpu pool, taskSeconds=480; every 20 min a workflow fans out 64 activities of ~8 min",
        make_tasks(rng, arrivals, 480.0, 0.25),
        horizon,
        knobs,
        poll,
        30.0,
        knobs.min_replicas,
        knobs.min_replicas,
    )


def noisy(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    knobs, poll = pool_knobs("cpu")
    horizon = 3600.0
    # Mean 3 tasks/s (~3.75 replicas busy), re-drawn every 20 s: lognormal, sigma 0.35.
    levels = 3.0 * rng.lognormal(-(0.35**2) / 2, 0.35, int(horizon // 20) + 1)
    peak = float(levels.max())
    return Trace(
        "noisy",
        "cpu pool; 3 tasks/s on average, the rate re-drawn every 20 s (lognormal, sigma 0.35); "
        "tasks ~5 s",
        make_tasks(rng, poisson(rng, lambda t: levels[int(t // 20)], peak, 0, horizon), 5.0, 0.5),
        horizon,
        knobs,
        poll,
        30.0,
        knobs.min_replicas,
        knobs.min_replicas,
        flips_goal=True,
    )


def gpu_spike(seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    knobs, poll = pool_knobs("gpu")
    horizon = 3600.0
    arrivals = poisson(rng, lambda t: 6.0, 6.0, 1200, 1260)  # 6/s for a minute after 20 min idle
    arrivals += list(2700 + rng.uniform(0, 1, 120))  # 120 at once after 20 more idle minutes
    return Trace(
        "gpu-spike",
        "gpu pool (scale to zero; KEDA minReplicaCount 0); idle 20 min, 6/s for 1 min, idle, "
        "120 at once at 45 min; tasks ~2 s; pods start in ~90 s (model loading)",
        make_tasks(rng, arrivals, 2.0, 0.3),
        horizon,
        knobs,
        poll,
        90.0,
        0,
        0,
    )


TRACES = (burst, diurnal, fan_out, noisy, gpu_spike)


def run(trace: Trace, seed: int) -> tuple[RunResult, RunResult]:
    phases = np.random.default_rng(seed + 1000)
    common = {
        "concurrency": trace.knobs.concurrency,
        "startup_s": trace.startup_s,
        "startup_jitter": 0.2,
        "horizon_s": trace.horizon_s,
        "initial_replicas": trace.initial_replicas,
        "stats_phase_s": float(phases.uniform(0, 6)),
        "seed": seed,
    }
    ours = simulate(
        trace.tasks,
        DocpipeAutoscaler(trace.knobs, trace.poll_s),
        poll_phase_s=float(phases.uniform(0, trace.poll_s)),
        **common,
    )
    keda = simulate(
        trace.tasks,
        KedaAutoscaler(
            trace.knobs.target_backlog_per_replica,
            trace.keda_min_replicas,
            trace.knobs.max_replicas,
            poll_interval_s=KEDA_POLL_S,
            cooldown_s=KEDA_COOLDOWN_S,
        ),
        poll_phase_s=float(phases.uniform(0, KEDA_POLL_S)),
        **common,
    )
    return ours, keda


def ratio(ours: float, theirs: float) -> float:
    if theirs > 0:
        return ours / theirs
    return 1.0 if ours == 0 else math.inf


def flips_per_5min(result: RunResult) -> float:
    return result.direction_changes / (result.horizon_s / 300.0)


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


FIGURES = {
    "age": "p95 age ratio",
    "cost": "worker-seconds ratio",
    "busy": "busy scale-downs",
    "flips": "changes per 5 min",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()

    figures: dict[str, dict[str, float]] = {}  # per trace: our ratios and counts
    misses: list[str] = []
    header = (
        f"{'policy':<8} {'p50_age_s':>9} {'p95_age_s':>9} {'max_age_s':>9} {'worker_s':>9} "
        f"{'peak':>4} {'changes':>7} {'per_5min':>8} {'busy_down':>9} {'lost':>4} {'done':>6} "
        f"{'waiting':>7}"
    )
    for index, make in enumerate(TRACES):
        trace = make(args.seed + index)
        ours, keda = run(trace, args.seed + index)
        print(f"== {trace.name}: {trace.description}")
        print(f"   {len(trace.tasks)} tasks over {trace.horizon_s / 60:.0f} min")
        print("   " + header)
        for result in (ours, keda):
            print(
                f"   {result.policy:<8} {result.wait_percentile(50):9.1f} "
                f"{result.wait_percentile(95):9.1f} {max(result.waits, default=0):9.1f} "
                f"{result.worker_seconds:9.0f} {result.peak_replicas:4d} "
                f"{result.direction_changes:7d} {flips_per_5min(result):8.2f} "
                f"{result.busy_scaledowns:9d} {result.interrupted:4d} {result.completed:6d} "
                f"{result.unstarted:7d}"
            )
        got = {
            "age": ratio(ours.wait_percentile(95), keda.wait_percentile(95)),
            "cost": ratio(ours.worker_seconds, keda.worker_seconds),
            "busy": float(ours.busy_scaledowns),
            "flips": flips_per_5min(ours),
        }
        figures[trace.name] = got
        checks = [
            f"p95 age {got['age']:.2f}x ({met(got['age'] <= GOAL_AGE_RATIO)})",
            f"worker-s {got['cost']:.2f}x ({met(got['cost'] <= GOAL_WORKER_RATIO)})",
            f"busy scale-downs {ours.busy_scaledowns} ({met(ours.busy_scaledowns == 0)})",
        ]
        if trace.flips_goal:
            checks.append(
                f"changes/5 min {got['flips']:.2f} ({met(got['flips'] <= GOAL_FLIPS_PER_5MIN)})"
            )
        print("   docpipe / keda: " + "; ".join(checks))
        misses += [f"{trace.name}: {check}" for check in checks if "NOT MET" in check]
        print()

    worst = {key: max(figures, key=lambda name: figures[name][key]) for key in FIGURES}
    print(
        "worst traces: "
        + ", ".join(
            f"{label} {worst[key] if figures[worst[key]][key] > 0 else 'none'}"
            for key, label in FIGURES.items()
        )
    )
    print("goals not met: " + ("none" if not misses else "; ".join(misses)))
    print(f"simulated in {time.perf_counter() - started:.1f} s")
    sys.stdout.flush()
    age, cost, busy, flips = (figures[worst[key]][key] for key in FIGURES)
    print(
        f"p95_age_ratio={age:.3f} worker_seconds_ratio={cost:.3f} "
        f"busy_scaledowns={int(busy)} flips_per_5min={flips:.2f}"
    )


if __name__ == "__main__":
    main()
