"""The load generator's arrivals form a Poisson process: the mean rate, with bursts and lulls."""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics

import pytest

from canaryflow.local import procs
from canaryflow.local.loadgen import main, parse_target, poisson_arrivals
from tests.unit.local_support import within_binomial_margin

ARRIVALS = 20_000


def gaps(rps: float, seed: int) -> list[float]:
    due = list(itertools.islice(poisson_arrivals(rps, random.Random(seed)), ARRIVALS))
    return [b - a for a, b in zip([0.0, *due], due, strict=False)]


def test_mean_gap_is_one_over_the_rate():
    mean = statistics.fmean(gaps(100, 1))
    # Mean of n exponential gaps: standard error (1/rps)/sqrt(n).
    assert abs(mean - 0.01) <= 4.5 * 0.01 / math.sqrt(ARRIVALS), mean


def test_gaps_vary_like_exponential_ones_not_a_fixed_schedule():
    spread = gaps(100, 2)
    variation = statistics.stdev(spread) / statistics.fmean(spread)
    assert 0.9 < variation < 1.1  # 1 for exponential gaps, 0 for a fixed schedule
    # Bursts: a gap under a tenth of the mean has probability 1 - e^-0.1 (a fixed schedule has none).
    p = 1 - math.exp(-0.1)
    bursts = sum(1 for g in spread if g < 0.001)
    assert within_binomial_margin(bursts, ARRIVALS, p), bursts


def test_same_seed_same_schedule():
    assert gaps(50, 3)[:100] == gaps(50, 3)[:100] != gaps(50, 4)[:100]


def test_command_line_takes_a_seed_and_ends_by_itself(capsys):
    nobody = procs.free_port()  # nothing listens: every request is a transport error, at once
    assert main(["--url", f"http://127.0.0.1:{nobody}", "--rps", "200", "--duration", "5",
                 "--max-requests", "5", "--seed", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sent"] == 5 and summary["transport_errors"] == 5 and summary["ok"] == 0


# -- several services: one target per service, each named in the Host header ---------------------

@pytest.mark.parametrize("text, parsed", [("checkout=10", ("checkout", 10.0)), (" pay =0.5", ("pay", 0.5))])
def test_a_target_is_a_service_and_its_rate(text, parsed):
    assert parse_target(text) == parsed


@pytest.mark.parametrize("text", ["checkout", "=5", "checkout=0", "checkout=-1", "checkout=fast", "checkout=nan"])
def test_a_malformed_target_is_refused_naming_the_flag(text):
    with pytest.raises(ValueError, match="--target must be NAME=RPS"):
        parse_target(text)
