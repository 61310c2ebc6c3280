"""Seed streams: repeatable from one seed, distinct per process, OS entropy without a seed."""

from __future__ import annotations

import argparse

from canaryflow.local.seeds import add_seed_argument, derive_seed, seed_flag, seeded_rng


def test_a_stream_is_repeatable_and_distinct_from_its_siblings():
    assert derive_seed(7, "service", 1, "v1") == derive_seed(7, "service", 1, "v1")
    seeds = {derive_seed(7, "service", 1, "v1"), derive_seed(7, "service", 2, "v1"),
             derive_seed(7, "service", 1, "v2"), derive_seed(8, "service", 1, "v1"), derive_seed(7, "routing")}
    assert len(seeds) == 5


def test_seeded_generators_repeat_and_unseeded_ones_do_not():
    assert [seeded_rng(3, "x").random() for _ in range(3)] == [seeded_rng(3, "x").random() for _ in range(3)]
    assert derive_seed(None, "x") is None
    assert seeded_rng(None, "x").random() != seeded_rng(None, "x").random()


def test_the_flag_carries_the_seed_to_a_child_and_back():
    parser = argparse.ArgumentParser()
    add_seed_argument(parser)
    child = derive_seed(11, "loadgen")
    assert parser.parse_args(seed_flag(child)).seed == child
    assert seed_flag(None) == [] and parser.parse_args([]).seed is None
