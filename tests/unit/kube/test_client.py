"""KubeApi turns the client's exceptions into errors a release can act on, with bounded retries."""

from __future__ import annotations

import json

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from canaryflow.errors import ConfigError, PlatformError
from canaryflow.kube.client import KubeApi, KubeConflict, KubeForbidden, KubeNotFound, api_client


class Response:
    def __init__(self, body):
        self.data = json.dumps(body).encode()


def api_error(status, message="", headers=None):
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message})
    exc.headers = headers or {}
    return exc


class Script:
    """A fake client method: raises or answers in turn, records the kwargs of each call."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return Response(outcome)


@pytest.fixture
def api():
    from kubernetes import client

    sleeps = []
    kube = KubeApi(client.ApiClient(client.Configuration()), namespace="shop", retries=4, backoff_base=0.01,
                   backoff_max=0.05, conflict_retries=5, sleep=sleeps.append)
    kube.sleeps = sleeps
    yield kube
    kube.close()


def test_success_decodes_json_and_sets_timeout_and_raw_content(api):
    fn = Script({"metadata": {"name": "checkout"}})
    assert api.call("get", "deployments.apps", "deployment", "checkout", fn) == {"metadata": {"name": "checkout"}}
    assert fn.calls[0]["_preload_content"] is False and fn.calls[0]["_request_timeout"] == (5, 30)


def test_forbidden_names_verb_resource_and_role(api):
    fn = Script(api_error(403, 'deployments.apps "checkout" is forbidden: token abc123'))
    with api.doing("set_weight"), pytest.raises(KubeForbidden) as info:
        api.call("patch", "deployments.apps", "deployment", "checkout", fn)
    message = str(info.value)
    assert message == ('set_weight: RBAC refused: cannot patch deployments.apps "checkout" in namespace "shop" — '
                       "grant it in the pipeline's Role (deployments/kubernetes/rbac.yaml)")
    assert "abc123" not in message  # the server's text is not echoed
    assert not info.value.transient and len(fn.calls) == 1


def test_forbidden_list_without_name(api):
    with pytest.raises(KubeForbidden, match='cannot list replicasets.apps in namespace "shop"'):
        api.call("list", "replicasets.apps", "replicaset", None, Script(api_error(403)))


def test_not_found_names_the_object(api):
    with pytest.raises(KubeNotFound) as info:
        api.call("get", "deployments.apps", "deployment", "checkout", Script(api_error(404)))
    assert 'deployment "checkout" not found in namespace "shop"' in str(info.value)
    assert not info.value.transient


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_then_succeed(api, status):
    fn = Script(api_error(status), api_error(status), {"ok": True})
    assert api.call("get", "deployments.apps", "deployment", "checkout", fn) == {"ok": True}
    assert len(fn.calls) == 3 and len(api.sleeps) == 2
    assert all(0 < s <= 0.05 for s in api.sleeps)


def test_retries_are_bounded_then_transient_error(api):
    fn = Script(*[api_error(503)] * 10)
    with pytest.raises(PlatformError) as info:
        api.call("patch", "deployments.apps/scale", "deployment", "checkout", fn)
    assert info.value.transient
    assert len(fn.calls) == 4 and len(api.sleeps) == 3
    assert "HTTP 503 after 4 attempts" in str(info.value)
    assert 'patch deployments.apps/scale "checkout"' in str(info.value)


def test_backoff_grows_exponentially_up_to_the_cap(api):
    api.backoff_max = 10
    delays = [api._backoff(n) for n in range(5)]
    for n, d in enumerate(delays):
        assert 0.01 * 2 ** n / 2 <= d <= 0.01 * 2 ** n


def test_retry_after_is_honoured_within_the_cap(api):
    fn = Script(api_error(429, headers={"Retry-After": "0.02"}), {"ok": 1})
    api.call("get", "deployments.apps", "deployment", "checkout", fn)
    assert api.sleeps == [0.02]
    fn = Script(api_error(429, headers={"Retry-After": "3600"}), {"ok": 1})
    api.call("get", "deployments.apps", "deployment", "checkout", fn)
    assert api.sleeps[-1] == 0.05


@pytest.mark.parametrize("error", [urllib3.exceptions.MaxRetryError(None, "/", "refused"),
                                   urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"),
                                   urllib3.exceptions.ProtocolError("reset"), ConnectionResetError()])
def test_network_errors_are_transient(api, error):
    fn = Script(*[error] * 4)
    with pytest.raises(PlatformError) as info:
        api.call("get", "deployments.apps", "deployment", "checkout", fn)
    assert info.value.transient and len(fn.calls) == 4
    assert type(error).__name__ in str(info.value)


def test_other_client_errors_are_not_retried(api):
    fn = Script(api_error(422, 'Deployment.apps "checkout" is invalid: spec.selector: immutable'))
    with pytest.raises(PlatformError) as info:
        api.call("patch", "deployments.apps", "deployment", "checkout", fn)
    assert not info.value.transient and len(fn.calls) == 1
    assert "HTTP 422" in str(info.value) and "immutable" in str(info.value)


def test_unauthorized_is_clear_and_final(api):
    with pytest.raises(PlatformError, match="rejected the credentials") as info:
        api.call("get", "deployments.apps", "deployment", "checkout", Script(api_error(401)))
    assert not info.value.transient


class TestUpdate:
    def test_conflicts_re_read_and_retry(self, api):
        reads, writes = [], []

        def read():
            reads.append(1)
            return {"metadata": {"resourceVersion": str(len(reads))}}

        def write(obj, patch):
            writes.append(obj["metadata"]["resourceVersion"])
            if len(writes) < 4:
                raise KubeConflict("conflict", operation="x", transient=True)
            return {"written": patch}

        assert api.update(read, lambda obj: {"v": 1}, write) == {"written": {"v": 1}}
        assert writes == ["1", "2", "3", "4"]  # every attempt carries a fresh resourceVersion

    def test_conflicts_are_bounded(self, api):
        def write(obj, patch):
            raise KubeConflict("conflict", operation="x", transient=True)

        with pytest.raises(KubeConflict):
            api.update(lambda: {"metadata": {}}, lambda obj: {"v": 1}, write)

    def test_no_change_means_no_write(self, api):
        def write(obj, patch):
            raise AssertionError("no write expected")

        assert api.update(lambda: {"metadata": {"x": 1}}, lambda obj: None, write) == {"metadata": {"x": 1}}


def test_409_maps_to_conflict(api):
    with pytest.raises(KubeConflict):
        api.call("create", "deployments.apps", "deployment", "c", Script(api_error(409, "already exists")))


class TestApiClient:
    def test_kubeconfig_with_context(self, tmp_path):
        path = tmp_path / "config"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "a",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}},
                         {"name": "d", "cluster": {"server": "http://127.0.0.1:2"}}],
            "users": [{"name": "u", "user": {"token": "s3cr3t-token"}}],
            "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}},
                         {"name": "b", "context": {"cluster": "d", "user": "u"}}],
        }))
        client = api_client(kubeconfig=str(path), context="b")
        try:
            assert client.configuration.host == "http://127.0.0.1:2"
            assert client.configuration.retries is False  # KubeApi's bounded retries are the only ones
        finally:
            client.close()

    def test_errors_name_file_and_context_not_contents(self, tmp_path):
        path = tmp_path / "config"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [],
                                    "users": [{"name": "u", "user": {"token": "s3cr3t-token"}}]}))
        with pytest.raises(ConfigError) as info:
            api_client(kubeconfig=str(path), context="missing")
        assert str(path) in str(info.value) and "'missing'" in str(info.value)
        assert "s3cr3t" not in str(info.value) and info.value.__cause__ is None
        assert info.value.fields == ("kubeconfig", "kube_context")

    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match="cannot load Kubernetes credentials"):
            api_client(kubeconfig=str(tmp_path / "nope"))

    def test_in_cluster_outside_a_pod(self, monkeypatch):
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        with pytest.raises(ConfigError, match="in-cluster") as info:
            api_client(in_cluster=True)
        assert info.value.fields == ("kube_in_cluster",)
