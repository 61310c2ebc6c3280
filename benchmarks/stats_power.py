"""How long the judge's statistics take per round and per report, at release-sized inputs.

    python benchmarks/stats_power.py [--repeat N]

``detectable_ratio`` runs once per promotion (200 seeded simulations of the rounds seen) and has to
stay well under half a second for 200 rounds; ``RatioEvidence.update`` runs every round for every
metric. Prints the median of N runs of each; no services needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryflow.stats import RatioEvidence, detectable_ratio  # noqa: E402


def median_seconds(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    canary_requests, baseline_requests = rng.poisson(10, size=200), rng.poisson(90, size=200)

    report = median_seconds(
        lambda: detectable_ratio(canary_requests, baseline_requests, baseline_rate=0.001, alpha=0.01), repeat
    )
    evidence = RatioEvidence.start()
    per_round = median_seconds(
        lambda: evidence.update(canary_events=1, baseline_events=2, canary_requests=10, baseline_requests=90),
        repeat * 100,
    )
    print(f"detectable_ratio, 200 rounds x 200 simulations: {report * 1000:.0f} ms (median of {repeat})")
    print(f"RatioEvidence.update, 40 grid points: {per_round * 1e6:.0f} us (median of {repeat * 100})")


if __name__ == "__main__":
    main()
