"""Named PromQL query presets for workloads on Kubernetes, selected with ``query_preset`` in a spec.

Each preset selects a version by namespace, workload and version labels and yields the raw
counters the judge reads (requests, errors, latency histogram buckets) for the canary and the
baseline alike, so the same judge works on application metrics and on the Istio mesh's own telemetry.

- ``app``: the application's ``http_requests_total`` / ``http_request_duration_seconds`` with
  ``namespace``, ``service`` and ``version`` labels (for instance added by a Prometheus
  ``kubernetes_sd_configs`` relabelling of the pod labels).
- ``istio``: ``istio_requests_total`` and ``istio_request_duration_milliseconds`` as reported by
  the destination sidecar, for the canary workload ``<service>-canary`` and its ``version`` label.
  Istio measures milliseconds: the preset says so (``latency_unit``) and the judge converts.
"""

from __future__ import annotations

from canaryflow.analysis_spec import QueryTemplates

_APP_SELECTOR = 'namespace="$namespace",service="$service",version="$version"'
# The stable Deployment is named after the service, the canary ``<service>-canary``; the version
# label tells them apart, so one template serves the canary and the baseline.
_ISTIO_SELECTOR = ('reporter="destination",destination_workload_namespace="$namespace",'
                   'destination_workload=~"$service(-canary)?",destination_version="$version"')

PRESET_QUERIES: dict[str, dict[str, str]] = {
    "app": {
        "requests": f"http_requests_total{{{_APP_SELECTOR}}}",
        "errors": f'http_requests_total{{{_APP_SELECTOR},code=~"5.."}}',
        "latency_buckets": f"http_request_duration_seconds_bucket{{{_APP_SELECTOR}}}",
        "latency_unit": "seconds",
    },
    "istio": {
        "requests": f"istio_requests_total{{{_ISTIO_SELECTOR}}}",
        "errors": f'istio_requests_total{{{_ISTIO_SELECTOR},response_code=~"5.."}}',
        "latency_buckets": f"istio_request_duration_milliseconds_bucket{{{_ISTIO_SELECTOR}}}",
        "latency_unit": "milliseconds",
    },
}

PRESETS = tuple(PRESET_QUERIES)


def preset(name: str) -> QueryTemplates:
    """The ``QueryTemplates`` of a preset; ``KeyError`` names the known presets."""
    try:
        return QueryTemplates.model_validate(PRESET_QUERIES[name])
    except KeyError:
        raise KeyError(f"unknown query preset {name!r}; known: {', '.join(PRESETS)}") from None
