"""One analysis round: read raw counters for the canary and the baseline, judge every metric.

The only stateful part of the judge: an ``Analysis`` keeps the counter snapshots of the previous
round (so each round's counts are differences, series by series, at one evaluation time) and the
latency boundaries it fixed from the baseline before the canary started. Everything it computes
from those counts is pure (:mod:`canaryflow.assess`), and the decision is :func:`canaryflow.judge.decide`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from canaryflow.analysis_spec import LatencyMetric, RatioMetric, ThresholdMetric
from canaryflow.assess.counts import (
    EMPTY_HISTOGRAM,
    ZERO,
    Counts,
    Histogram,
    Snapshot,
    bucket_increase,
    counts,
    increase,
)
from canaryflow.assess.latency import HistogramPair, assess_latency, auto_boundaries, to_ms
from canaryflow.assess.ratio import PairCounts, assess_ratio
from canaryflow.assess.threshold import assess_threshold
from canaryflow.assess.traffic import assess_traffic
from canaryflow.errors import PlatformError, PreflightError
from canaryflow.judge import Measurement, Policy, QueryResult
from canaryflow.spec import ReleaseSpec

if TYPE_CHECKING:
    from canaryflow.prometheus import SeriesResult
    from canaryflow.release import ReleaseRun


class MetricSource(Protocol):
    def query(self, promql: str, *, at: float | None = None) -> QueryResult: ...

    def query_series(self, promql: str, *, at: float | None = None) -> SeriesResult: ...

    def is_online(self) -> bool: ...


def check_preconditions(run: ReleaseRun) -> None:
    """Refuse a release that could not be judged or has nothing to replace; changes nothing."""
    source = run.source
    if not source.is_online():
        raise PreflightError(f"Prometheus at {source.url} is not ready (/-/ready)", reason="metrics_unavailable")
    sample = source.query("vector(1)")
    if sample.error or sample.value != 1:
        raise PreflightError(f"Prometheus at {source.url} failed a sample query: {sample.error or sample.value}",
                             reason="metrics_unavailable")
    run.previous_version = run.platform.stable_version()
    if run.previous_version == run.spec.version:
        raise PreflightError(f"{run.spec.service} already runs {run.spec.version}")
    try:
        run.platform.check_version(run.spec.version)
    except PlatformError as exc:
        if exc.transient:
            raise
        raise PreflightError(f"{run.spec.service} {run.spec.version} cannot be released: {exc}") from None


def policy_for(spec: ReleaseSpec) -> Policy:
    return Policy(
        steps=tuple(spec.steps), step_wait_seconds=spec.step_wait_seconds,
        max_consecutive_errors=spec.max_consecutive_errors, max_hold_seconds=spec.max_hold_seconds,
        max_step_backs=spec.max_step_backs,
    )


def comparison_alpha(spec: ReleaseSpec) -> float:
    """Each metric compared with the baseline gets an equal share of ``analysis.alpha`` (Bonferroni),
    so alpha bounds the chance that *any* of them rolls back a canary no worse than its baseline."""
    compared = sum(isinstance(m, (RatioMetric, LatencyMetric)) for m in spec.analysis.metrics)
    return spec.analysis.alpha / max(1, compared)


@dataclass
class Analysis:
    """The judge's memory between rounds for one release: snapshots, boundaries, last verdicts."""

    spec: ReleaseSpec
    source: MetricSource
    baseline_version: str | None
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    boundaries: dict[str, tuple[float, ...]] = field(default_factory=dict)
    last: dict[str, Measurement] = field(default_factory=dict)
    sample_times: dict[str, float] = field(default_factory=dict)  # per version: mean sample time last read
    unread_at_start: dict[str, str] = field(default_factory=dict)  # metric -> why start could not snapshot it

    # -- queries --------------------------------------------------------------------------------

    def _templates(self, metric: RatioMetric | LatencyMetric) -> dict[str, str]:
        queries = self.spec.queries
        if isinstance(metric, RatioMetric):
            return {"total": metric.total or queries.requests, "bad": metric.bad or queries.errors}
        return {"buckets": metric.buckets or queries.latency_buckets}

    def _unit(self, metric: LatencyMetric) -> str:
        return metric.unit or self.spec.queries.latency_unit

    def _read(self, reads: list[tuple[str, str | None]], at: float | None
              ) -> list[tuple[Snapshot | None, Snapshot]] | str:
        """(snapshot before, snapshot now) for each (template, version), or the first error.

        All or nothing: the stored snapshots move only when every counter of the metric was read,
        so a failed round's counts land whole in the next one (had the request counter moved on
        and the error counter not, the next round would hold two intervals of errors over one of
        requests). ``before`` is None for a counter never read before (``start`` could not)."""
        answers: list[tuple[str | None, Snapshot]] = []
        for template, version in reads:
            if version is None:
                answers.append((None, {}))
                continue
            query = self.spec.render(template, version=version)
            answer = self.source.query_series(query, at=at)
            if answer.error is not None or answer.series is None:
                return answer.error or "no answer"
            answers.append((query, answer.series))
        read: list[tuple[Snapshot | None, Snapshot]] = []
        for promql, series in answers:
            if promql is None:
                read.append(({}, series))
                continue
            read.append((self.snapshots.get(promql), series))
            self.snapshots[promql] = series
        return read

    def _span(self, template: str, version: str | None, at: float, since: float | None = None) -> float | None:
        """Seconds between the samples this round's counts of ``version`` came from and the previous
        round's. Targets are scraped at different moments, so one version's counts can cover a
        scrape interval more than the other's: the traffic-split check compares rates over these
        spans, never raw counts (with 15-30 s scrapes the skew would otherwise dwarf any real mismatch)."""
        if version is None:
            return None
        answer = self.source.query_series(f"timestamp({self.spec.render(template, version=version)})", at=at)
        if answer.error is not None or not answer.series:
            return None
        now = sum(answer.series.values()) / len(answer.series)
        before, self.sample_times[version] = self.sample_times.get(version), now
        if before is None or (since is not None and before < since):
            return None  # the span reaches back before the weight was set: it mixes two weights
        return max(0.0, now - before)

    def start(self, *, at: float | None = None) -> None:
        """Snapshot every counter before the canary gets traffic, and fix the latency boundaries
        from the baseline's history (never from the canary)."""
        at = time.time() if at is None else at
        for metric in self.spec.analysis.metrics:
            if isinstance(metric, ThresholdMetric):
                continue
            read = self._read(self._counters(metric), at)
            if isinstance(read, str):
                self.unread_at_start[metric.name] = read
            if isinstance(metric, LatencyMetric):
                self.boundaries[metric.name] = self._boundaries(metric)
        self._split_spans(at)

    def _counters(self, metric: RatioMetric | LatencyMetric) -> list[tuple[str, str | None]]:
        """(template, version) of every counter ``metric`` is judged on: the canary's, then the baseline's."""
        return [(template, version) for version in (self.spec.version, self.baseline_version)
                for template in self._templates(metric).values()]

    def _boundaries(self, metric: LatencyMetric) -> tuple[float, ...]:
        unit = self._unit(metric)
        scale = 1000 if unit == "seconds" else 1
        if metric.boundaries_ms != "auto":
            return tuple(b / scale for b in metric.boundaries_ms)
        template = self._templates(metric)["buckets"]
        history, known = Histogram(()), set[float]()
        for version in (self.spec.version, self.baseline_version):
            if version is None:
                continue
            snapshot = self.snapshots.get(self.spec.render(template, version=version), {})
            seen = Histogram.from_increase(bucket_increase(None, snapshot))
            known.update(seen.boundaries)
            if version == self.baseline_version:
                history = seen
        limit = self._latency_limit(metric) / scale
        return auto_boundaries(history, limit_le=_nearest_at_or_above(tuple(sorted(known)), limit))

    def _latency_limit(self, metric: LatencyMetric) -> float:
        return metric.max_ms if metric.max_ms is not None else self.spec.max_p95_latency_ms

    # -- one round ------------------------------------------------------------------------------

    def round(self, *, step_index: int, expected_share: float, at: float | None = None,
              weight_set_at: float | None = None) -> tuple[Measurement, ...]:
        """Every metric once, in spec order, then the traffic-split check on the first ratio metric.
        ``weight_set_at`` (Unix time) keeps counts scraped before the step's weight out of that check."""
        at = time.time() if at is None else at
        analysis = self.spec.analysis
        alpha = comparison_alpha(self.spec)
        results: list[Measurement] = []
        split: tuple[Counts | None, Counts | None] | None = None
        spans = self._split_spans(at, since=weight_set_at)
        for metric in analysis.metrics:
            previous = self.last.get(metric.name)
            state = previous.state if previous else None
            if isinstance(metric, RatioMetric):
                observed = self._ratio_counts(metric, at)
                if split is None:
                    split = (None, None) if isinstance(observed, str) else (observed.canary, observed.baseline)
                m = assess_ratio(metric, observed=observed, previous=state, step_index=step_index,
                                 limit=metric.max if metric.max is not None else self.spec.max_error_rate,
                                 alpha=alpha, min_requests=self.spec.min_canary_requests, strict=analysis.strict)
            elif isinstance(metric, LatencyMetric):
                m = assess_latency(metric, observed=self._histograms(metric, at), previous=state,
                                   step_index=step_index, boundaries=self.boundaries.get(metric.name, ()),
                                   unit=self._unit(metric), limit_ms=self._latency_limit(metric), alpha=alpha,
                                   min_requests=self.spec.min_canary_requests, strict=analysis.strict)
            else:
                m = assess_threshold(metric, observed=self.source.query(self.spec.render(metric.query), at=at),
                                     previous=state)
            self.last[metric.name] = m
            results.append(m)
        if split is not None:
            previous = self.last.get("traffic_split")
            m = assess_traffic(canary=split[0], baseline=split[1], spans=spans, expected_share=expected_share,
                               previous=previous.state if previous else None, step_index=step_index,
                               alpha=analysis.traffic_alpha, concentration=analysis.traffic_concentration)
            self.last["traffic_split"] = m
            results.append(m)
        return tuple(results)

    def _split_spans(self, at: float, since: float | None = None) -> tuple[float | None, float | None]:
        """The sample spans behind the first ratio metric's request counts (the traffic split's)."""
        first = next((m for m in self.spec.analysis.metrics if isinstance(m, RatioMetric)), None)
        if first is None:
            return None, None
        template = self._templates(first)["total"]
        return (self._span(template, self.spec.version, at, since),
                self._span(template, self.baseline_version, at, since))

    def _ratio_counts(self, metric: RatioMetric, at: float) -> PairCounts | str:
        read = self._read(self._counters(metric), at)  # canary total, bad; baseline total, bad
        if isinstance(read, str):
            return read
        if any(before is None for before, _ in read):
            return PairCounts(canary=ZERO, baseline=ZERO)  # never snapshotted: counting starts now (below)
        (c_total0, c_total), (c_bad0, c_bad), (b_total0, b_total), (b_bad0, b_bad) = read
        return PairCounts(canary=counts(increase(c_total0, c_total), increase(c_bad0, c_bad)),
                          baseline=counts(increase(b_total0, b_total), increase(b_bad0, b_bad)))

    def _histograms(self, metric: LatencyMetric, at: float) -> HistogramPair | str:
        read = self._read(self._counters(metric), at)  # canary buckets, baseline buckets
        if isinstance(read, str):
            return read
        if any(before is None for before, _ in read):
            return HistogramPair(canary=EMPTY_HISTOGRAM, baseline=EMPTY_HISTOGRAM)  # never snapshotted (below)
        (c_before, c_now), (b_before, b_now) = read
        return HistogramPair(canary=Histogram.from_increase(bucket_increase(c_before, c_now)),
                             baseline=Histogram.from_increase(bucket_increase(b_before, b_now)))

    # A counter that ``start`` could not read (Prometheus failed then) has no snapshot from before the
    # canary's traffic: its whole value would count as this release's (the baseline's history, the
    # canary's smoke test). The first round that reads it counts nothing for its metric and takes
    # the snapshot; counting starts from there. Less evidence, never wrong evidence.

    def describe_boundaries(self) -> dict[str, list[float]]:
        """The latency boundaries in ms, per metric, as fixed at the start (for plan and the report)."""
        return {name: [to_ms(b, self._unit(m)) for b in self.boundaries.get(name, ())]
                for m in self.spec.analysis.metrics if isinstance(m, LatencyMetric) for name in [m.name]}


def _nearest_at_or_above(boundaries: tuple[float, ...], limit: float) -> float | None:
    return min((b for b in boundaries if b >= limit and b != float("inf")), default=None)


def next_pause(*, elapsed: float, wait: float, interval: float) -> float:
    """Seconds until the next analysis round: every ``interval``, plus one round exactly at the end
    of the wait so a step never ends on a stale measurement."""
    if elapsed < wait:
        return max(0.0, min(interval, wait - elapsed))
    return interval

