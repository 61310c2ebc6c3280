"""Access to the Kubernetes API through the official client, with canaryflow's error meanings.

``api_client`` builds an ``ApiClient`` from a kubeconfig (file and context) or the in-cluster
service account. ``KubeApi`` wraps the few calls canaryflow makes and turns ``ApiException`` into
errors a release can act on:

- 409 Conflict on a write with a stale ``resourceVersion``: ``update`` re-reads and retries its
  read-modify-write (bounded);
- 429, 5xx, timeouts and connection errors: bounded retries with exponential backoff, then
  ``PlatformError(transient=True)`` (the flow's task retries take over);
- 403: ``KubeForbidden`` naming the verb and resource the pipeline's Role lacks;
- 404: ``KubeNotFound`` naming the object.

Objects are plain dicts as the API serves them (camelCase), so nothing the client's models do not
know is lost on a read-modify-write. Messages carry names and numbers only, never credentials.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from canaryflow.errors import ConfigError, PlatformError

log = logging.getLogger(__name__)

RBAC_FILE = "deployments/kubernetes/rbac.yaml"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def api_client(*, kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False) -> Any:
    """An ``ApiClient`` for the in-cluster service account or a kubeconfig file and context.

    ``kubeconfig=None`` lets the client's loader choose (``$KUBECONFIG``, else ``~/.kube/config``).
    Errors name the file and context, never what the file holds.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        if in_cluster:
            where = "in-cluster service account (is the worker running in a pod?)"
            fields: tuple[str, ...] = ("kube_in_cluster",)
        else:
            where = f"kubeconfig {kubeconfig or '(default: $KUBECONFIG or ~/.kube/config)'}"
            where += f", context {context!r}" if context else ", current context"
            fields = ("kubeconfig", "kube_context")
        raise ConfigError(f"cannot load Kubernetes credentials from {where} ({type(exc).__name__})",
                          fields=fields) from None
    # No hidden retries in urllib3 (it would sleep for any Retry-After on 429/503, unbounded):
    # KubeApi's own bounded loop is the only one.
    configuration.retries = False
    return client.ApiClient(configuration)


class KubeForbidden(PlatformError):
    """RBAC refused a call: the pipeline's Role lacks a verb on a resource."""


class KubeNotFound(PlatformError):
    """The object named does not exist."""


class KubeConflict(PlatformError):
    """A write lost a race (stale resourceVersion) or the object already exists."""


def _transient_network_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions

    return (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, shortened; empty when there is none."""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        return ""
    return str(message)[:300]


class KubeApi:
    """The calls canaryflow makes, in one namespace, as dicts, with retries and clear errors.

    ``retries`` bounds the attempts for transient failures (backoff ``backoff_base`` x 2^n, capped
    at ``backoff_max``, with jitter); ``conflict_retries`` bounds the attempts of one
    read-modify-write. ``sleep`` is injectable for tests.
    """

    def __init__(
        self, api_client: Any, *, namespace: str, retries: int = 5, backoff_base: float = 0.5,
        backoff_max: float = 8.0, conflict_retries: int = 8, request_timeout: float | tuple[float, float] = (5, 30),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.retries = max(1, retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.conflict_retries = max(1, conflict_retries)
        self.request_timeout = request_timeout
        self._sleep = sleep
        self.operation = "kubernetes"

    def close(self) -> None:
        self.api_client.close()

    @contextmanager
    def doing(self, operation: str) -> Iterator[None]:
        """Name the platform operation that errors raised inside belong to."""
        previous, self.operation = self.operation, operation
        try:
            yield
        finally:
            self.operation = previous

    # -- the call wrapper --------------------------------------------------------------------------

    def _describe(self, resource: str, name: str | None) -> str:
        target = f'{resource} "{name}"' if name else resource
        return f'{target} in namespace "{self.namespace}"'

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        return delay * (0.5 + random.random() / 2)

    def call(self, verb: str, resource: str, kind: str, name: str | None, fn: Callable[..., Any],
             *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (an official client method) with retries for transient failures.

        ``resource`` is the RBAC resource (``deployments.apps``, ``deployments.apps/scale``),
        ``kind`` the object's kind in lower case for not-found messages. Returns the decoded JSON.
        """
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.request_timeout)
        kwargs.setdefault("_preload_content", False)
        network_errors = _transient_network_errors()
        last = ""
        for attempt in range(self.retries):
            retry_after = None
            try:
                response = fn(*args, **kwargs)
                data = response.data if hasattr(response, "data") else response
                if isinstance(data, bytes | bytearray):
                    return json.loads(data) if data else None
                return data
            except ApiException as exc:
                status = exc.status or 0
                if status == 403:
                    raise KubeForbidden(
                        f"RBAC refused: cannot {verb} {self._describe(resource, name)} — grant it in the "
                        f"pipeline's Role ({RBAC_FILE})", operation=self.operation) from None
                if status == 404:
                    raise KubeNotFound(f'{kind} "{name}" not found in namespace "{self.namespace}"'
                                       if name else f"{resource} not served by the API server "
                                       f"(is its CustomResourceDefinition installed?)",
                                       operation=self.operation) from None
                if status == 409:
                    raise KubeConflict(f"conflict on {verb} {self._describe(resource, name)}: "
                                       f"{_status_message(exc.body) or 'object changed or exists'}",
                                       operation=self.operation, transient=True) from None
                if status == 401:
                    raise PlatformError("the API server rejected the credentials (401 Unauthorized); "
                                        "check the kubeconfig or service-account token",
                                        operation=self.operation) from None
                if status == 429 or status >= 500:
                    last = f"HTTP {status}"
                    retry_after = (exc.headers or {}).get("Retry-After") if status == 429 else None
                else:
                    message = _status_message(exc.body) or (exc.reason or "")
                    raise PlatformError(f"{verb} {self._describe(resource, name)} refused: HTTP {status} {message}",
                                        operation=self.operation) from None
            except network_errors as exc:
                last = type(exc).__name__
            if attempt + 1 < self.retries:
                delay = self._backoff(attempt, retry_after)
                log.info("%s %s: %s, retrying in %.2fs (attempt %d/%d)", verb, self._describe(resource, name),
                         last, delay, attempt + 1, self.retries)
                self._sleep(delay)
        raise PlatformError(f"{verb} {self._describe(resource, name)} failed: {last} after {self.retries} attempts",
                            operation=self.operation, transient=True)

    def update(self, read: Callable[[], dict[str, Any]], change: Callable[[dict[str, Any]], Any],
               write: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Any:
        """Read-modify-write, re-read on 409. ``change(obj)`` returns a patch, or None for no change;
        ``write(obj, patch)`` sends it (carrying ``obj``'s ``resourceVersion``)."""
        for attempt in range(self.conflict_retries):
            obj = read()
            patch = change(obj)
            if patch is None:
                return obj
            try:
                return write(obj, patch)
            except KubeConflict:
                if attempt + 1 == self.conflict_retries:
                    raise
                self._sleep(min(self.backoff_max, self.backoff_base * attempt / 4))
        raise AssertionError("unreachable")

    # -- Deployments -------------------------------------------------------------------------------

    def get_deployment(self, name: str) -> dict[str, Any]:
        return self.call("get", "deployments.apps", "deployment", name,
                         self.apps.read_namespaced_deployment, name, self.namespace)

    def find_deployment(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get_deployment(name)
        except KubeNotFound:
            return None

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("create", "deployments.apps", "deployment", body["metadata"]["name"],
                         self.apps.create_namespaced_deployment, self.namespace, body)

    def patch_deployment(self, name: str, patch: Any, *, content_type: str = STRATEGIC_MERGE_PATCH) -> dict[str, Any]:
        return self.call("patch", "deployments.apps", "deployment", name,
                         self.apps.patch_namespaced_deployment, name, self.namespace, patch,
                         _content_type=content_type)

    def delete_deployment(self, name: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.call("delete", "deployments.apps", "deployment", name,
                      self.apps.delete_namespaced_deployment, name, self.namespace)
            return True
        except KubeNotFound:
            return False

    def scale_deployment(self, name: str, replicas: int) -> dict[str, Any]:
        """Set replicas through the ``deployments/scale`` subresource (no template write)."""
        return self.call("patch", "deployments.apps/scale", "deployment", name,
                         self.apps.patch_namespaced_deployment_scale, name, self.namespace,
                         {"spec": {"replicas": int(replicas)}}, _content_type=MERGE_PATCH)

    def list_deployments(self) -> list[dict[str, Any]]:
        result = self.call("list", "deployments.apps", "deployment", None,
                           self.apps.list_namespaced_deployment, self.namespace)
        return list((result or {}).get("items") or [])

    def list_replicasets(self, selector: dict[str, str] | None = None) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in (selector or {}).items()) or None
        result = self.call("list", "replicasets.apps", "replicaset", None,
                           self.apps.list_namespaced_replica_set, self.namespace, label_selector=label_selector)
        return list((result or {}).get("items") or [])

    # -- custom objects (VirtualService, HTTPRoute) ------------------------------------------------

    def get_custom(self, group: str, version: str, plural: str, kind: str, name: str) -> dict[str, Any]:
        return self.call("get", f"{plural}.{group}", kind, name, self.custom.get_namespaced_custom_object,
                         group, version, self.namespace, plural, name)

    def patch_custom(self, group: str, version: str, plural: str, kind: str, name: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        return self.call("patch", f"{plural}.{group}", kind, name, self.custom.patch_namespaced_custom_object,
                         group, version, self.namespace, plural, name, patch, _content_type=MERGE_PATCH)

    def list_custom(self, group: str, version: str, plural: str, kind: str) -> list[dict[str, Any]]:
        result = self.call("list", f"{plural}.{group}", kind, None, self.custom.list_namespaced_custom_object,
                           group, version, self.namespace, plural)
        return list((result or {}).get("items") or [])
