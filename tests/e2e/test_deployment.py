"""prefect.yaml's canary-release deployment, registered on a real Prefect server and run by a real
process worker: what users do, not a direct function call."""

from __future__ import annotations

import pytest

from tests.conftest import on_postgresql
from tests.e2e.conftest import FAST_SPEC, cli_env, controller_state, prefect_cli

# The first test of a session also waits for the PostgreSQL-backed server: initdb and Prefect's
# migrations on PostgreSQL take 1-3 min on a busy 2-core machine, inside that test's timeout.
# One PostgreSQL cluster and one Prefect server on it for the suite: every module on it runs on one worker.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480), pytest.mark.xdist_group("postgresql")]
prefect_server = on_postgresql()  # these runs go to the PostgreSQL-backed server, as in production


def test_deployment_is_registered_validated_and_run_by_a_worker(prefect_server, deployments, stack):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError

    worker_env = cli_env(prefect_server)  # now, after the stack set its variables
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("canary-release/production")
    assert deployment.entrypoint == "flows/release.py:canary_release"
    assert deployment.work_pool_name == "canaryflow"
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["spec"]
    assert "ReleaseSpec" in str(schema["properties"]["spec"])

    with pytest.raises(PrefectHTTPStatusError):  # the spec's schema is enforced before any run exists
        run_deployment("canary-release/production", parameters={"spec": {"service": "Not_Valid"}}, timeout=0)

    flow_run = run_deployment("canary-release/production",
                              parameters={"spec": {**FAST_SPEC, "version": "v2"}}, timeout=0)
    worker = prefect_cli("worker", "start", "--pool", "canaryflow", "--run-once", env=worker_env, timeout=240)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

    with get_client(sync_client=True) as client:
        finished = client.read_flow_run(flow_run.id)
    assert finished.name == "release/checkout/v2/production"
    assert finished.state.is_completed(), finished.state
    assert controller_state(stack)["stable"]["version"] == "v2"
