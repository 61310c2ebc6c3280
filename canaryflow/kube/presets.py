"""Named PromQL query presets for workloads on Kubernetes, selected with ``query_preset`` in a spec.

Each preset selects the canary by namespace, workload and version labels and yields the three
queries the judge reads (error rate as a fraction, p95 latency in seconds, request count), so
the same judge works on application metrics and on the Istio mesh's own telemetry.

- ``app``: the application's ``http_requests_total`` / ``http_request_duration_seconds`` with
  ``namespace``, ``service`` and ``version`` labels (for instance added by a Prometheus
  ``kubernetes_sd_configs`` relabelling of the pod labels).
- ``istio``: ``istio_requests_total`` and ``istio_request_duration_milliseconds`` as reported by
  the destination sidecar, for the canary workload ``<service>-canary`` and its ``version`` label.
  Istio measures milliseconds; the p95 query divides by 1000 so the judge receives seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from canaryflow.spec import QueryTemplates

_APP_SELECTOR = 'namespace="$namespace",service="$service",version="$version"'
_ISTIO_SELECTOR = ('reporter="destination",destination_workload_namespace="$namespace",'
                   'destination_workload=~"$service-canary",destination_version="$version"')

PRESET_QUERIES: dict[str, dict[str, str]] = {
    "app": {
        "error_rate": (
            f'(sum(rate(http_requests_total{{{_APP_SELECTOR},code=~"5.."}}[$window])) or vector(0))'
            f" / sum(rate(http_requests_total{{{_APP_SELECTOR}}}[$window]))"
        ),
        "p95_latency_seconds": (
            "histogram_quantile(0.95, sum by (le) (rate("
            f"http_request_duration_seconds_bucket{{{_APP_SELECTOR}}}[$window])))"
        ),
        "request_count": f"sum(increase(http_requests_total{{{_APP_SELECTOR}}}[$window]))",
    },
    "istio": {
        "error_rate": (
            f'(sum(rate(istio_requests_total{{{_ISTIO_SELECTOR},response_code=~"5.."}}[$window])) or vector(0))'
            f" / sum(rate(istio_requests_total{{{_ISTIO_SELECTOR}}}[$window]))"
        ),
        "p95_latency_seconds": (
            "histogram_quantile(0.95, sum by (le) (rate("
            f"istio_request_duration_milliseconds_bucket{{{_ISTIO_SELECTOR}}}[$window]))) / 1000"
        ),
        "request_count": f"sum(increase(istio_requests_total{{{_ISTIO_SELECTOR}}}[$window]))",
    },
}

PRESETS = tuple(PRESET_QUERIES)


def preset(name: str) -> QueryTemplates:
    """The ``QueryTemplates`` of a preset; ``KeyError`` names the known presets."""
    from canaryflow.spec import QueryTemplates

    try:
        return QueryTemplates(**PRESET_QUERIES[name])
    except KeyError:
        raise KeyError(f"unknown query preset {name!r}; known: {', '.join(PRESETS)}") from None
