"""The statistics of the canary judge: anytime-valid tests on integer counts (JUDGE.md).

Pure numpy/scipy, no orchestration: the judge feeds per-round count deltas in and reads evidence
out, and every function here can be checked by hand or by simulation.

* ``eprocess`` — canary worse than baseline (ratio e-process, one-sided, checked every round).
* ``confseq`` — absolute guard rails (Beta-binomial confidence sequence against an SLO limit).
* ``srm`` — traffic split check (sample ratio mismatch Bayes factor).
* ``power`` — what a promotion is worth (the smallest regression the tests would have caught).
"""

from canaryflow.stats.confseq import (
    beta_binomial_cs,
    beta_binomial_log_martingale,
    credibly_above,
    credibly_below,
    prior_b,
)
from canaryflow.stats.eprocess import (
    MAX_E_VALUE,
    RatioEvidence,
    RatioGrid,
    average_log_e,
    ratio_log_eprocess,
    theta,
)
from canaryflow.stats.power import detectable_rate, detectable_ratio
from canaryflow.stats.srm import srm_log_bayes_factor

__all__ = [
    "MAX_E_VALUE",
    "RatioEvidence",
    "RatioGrid",
    "average_log_e",
    "beta_binomial_cs",
    "beta_binomial_log_martingale",
    "credibly_above",
    "credibly_below",
    "detectable_rate",
    "detectable_ratio",
    "prior_b",
    "ratio_log_eprocess",
    "srm_log_bayes_factor",
    "theta",
]
