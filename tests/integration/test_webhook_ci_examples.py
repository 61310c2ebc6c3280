"""The example CI jobs in deployments/ really sign and post: their shell scripts (openssl, jq, curl)
are run against the receiver served by uvicorn, with an in-memory starter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prefect.states import Completed, Failed
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from canaryflow.webhook.starter import InMemoryStarter
from tests.integration.served import ServedApp

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ci-example-s3cret"
pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not all(shutil.which(t) for t in ("curl", "openssl", "jq", "bash")),
                                 reason="needs curl, openssl, jq and bash")]


class CountingPosts:
    """ASGI middleware: how many POSTs reached the receiver (what a client's retries send)."""

    def __init__(self, app) -> None:
        self.app, self.posts = app, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
        await self.app(scope, receive, send)


@pytest.fixture
def served():
    starter = InMemoryStarter()
    app = CountingPosts(create_app(WebhookConfig(rate_limit_per_second=0), starter=starter,
                                   secrets=WebhookSecrets(generic=SecretStr(SECRET))))
    with ServedApp(app) as served:
        served.starter, served.counter = starter, app
        yield served


def run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"], **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=30, check=False)


def frozen_clock(tmp_path: Path) -> dict[str, str]:
    """A ``date`` on PATH that always prints one time, so a second run of a script resends the very
    request the first sent (what curl's --retry does) instead of signing a new delivery."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "date").write_text(f"#!/bin/sh\necho {int(time.time())}\n")
    (bin_dir / "date").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_github_actions_example_signs_and_posts(served, tmp_path):
    workflow = yaml.safe_load((ROOT / "deployments/github-actions-release.yml").read_text())
    step = workflow["jobs"]["canary"]["steps"][0]
    env = {"CANARYFLOW_WEBHOOK_URL": served.url, "CANARYFLOW_WEBHOOK_SECRET": SECRET, "SERVICE": "checkout",
           "VERSION": "v1.2.3", "ENVIRONMENT": "production", "IMAGE": "ghcr.io/acme/checkout:v1.2.3",
           "DELIVERY": "1234567890-1", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), **frozen_clock(tmp_path)}
    for _ in range(2):  # the second post resends the signed request: same run, curl still succeeds (200)
        done = run_script(step["run"], env, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    [run] = served.starter.runs.values()
    spec = run["request"].parameters["spec"]
    assert (spec["service"], spec["version"], spec["environment"]) == ("checkout", "v1.2.3", "production")
    assert run["request"].idempotency_key.startswith("generic:")
    assert SECRET not in done.stdout + done.stderr

    before = served.counter.posts
    done = run_script(step["run"], {**env, "CANARYFLOW_WEBHOOK_SECRET": "wrong"}, tmp_path)
    assert done.returncode != 0 and "signature invalid" in done.stdout + done.stderr
    assert served.counter.posts == before + 1  # a 401 is final: curl's --retry does not send it again


def test_gitlab_ci_example_does_not_retry_a_refused_payload(served, tmp_path):
    pipeline = yaml.safe_load((ROOT / "deployments/gitlab-ci-release.yml").read_text())
    job = pipeline["canary-release"]
    env = {"CANARYFLOW_WEBHOOK_URL": served.url, "CANARYFLOW_WEBHOOK_SECRET": SECRET,
           "CI_PROJECT_NAME": "Not A Service!", "CI_COMMIT_TAG": "v9.0.0",
           "CI_REGISTRY_IMAGE": "registry.example/acme/orders", "CI_PIPELINE_ID": "5502", "CI_JOB_ID": "88002",
           **job["variables"]}
    done = run_script("\n".join(job["script"]), env, tmp_path)
    assert done.returncode != 0
    assert served.counter.posts == 1 and not served.starter.runs  # a 422 is final too: one post, no run


def ended_by_a_worker(served, state, *, within: float = 20) -> str:
    """Wait for the script's delivery to create its run, then end the run as a worker would."""
    deadline = time.monotonic() + within
    while not served.starter.runs:
        assert time.monotonic() < deadline, "the script posted nothing"
        time.sleep(0.05)
    [run] = served.starter.runs.values()
    served.starter.end(run["id"], state)
    return run["id"]


@pytest.mark.parametrize(("state", "code", "said"), [
    (Failed(name="RolledBack", message="rolled back (high_error_rate): error_rate: canary 2.10 % (42/2,000)"),
     1, "rolled back (high_error_rate): error_rate: canary 2.10 % (42/2,000)"),
    (Completed(), 0, "promoted"),
])
def test_gitlab_ci_example_posts_then_gates_on_the_outcome(served, tmp_path, state, code, said):
    pipeline = yaml.safe_load((ROOT / "deployments/gitlab-ci-release.yml").read_text())
    job = pipeline["canary-release"]
    env = {"CANARYFLOW_WEBHOOK_URL": served.url, "CANARYFLOW_WEBHOOK_SECRET": SECRET,
           "CI_PROJECT_NAME": "orders", "CI_COMMIT_TAG": "v9.0.0", "CI_REGISTRY_IMAGE": "registry.example/acme/orders",
           "CI_PIPELINE_ID": "5501", "CI_JOB_ID": "88001", "POLL_SECONDS": "0.2", **job["variables"]}
    script = subprocess.Popen(["bash", "-c", "\n".join(job["script"])], env={"PATH": os.environ["PATH"], **env},
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = ended_by_a_worker(served, state)
        out, err = script.communicate(timeout=30)
    finally:
        script.kill()
    assert script.returncode == code, out + err
    [run] = served.starter.runs.values()
    spec = run["request"].parameters["spec"]
    assert (spec["service"], spec["version"], spec["environment"]) == ("orders", "v9.0.0", "staging")
    answer = json.loads((tmp_path / "response.json").read_text())
    assert answer["delivery"] == "5501-88001" and answer["idempotency_key"] == run["request"].idempotency_key
    assert out.rstrip().endswith(f"release/orders/v9.0.0/staging ({run_id}): {said}"), out
    assert SECRET not in out + err


def test_github_actions_example_waits_for_the_outcome(served, tmp_path):
    workflow = yaml.safe_load((ROOT / "deployments/github-actions-release.yml").read_text())
    post, gate = workflow["jobs"]["canary"]["steps"]
    summary = tmp_path / "summary.md"
    env = {"CANARYFLOW_WEBHOOK_URL": served.url, "CANARYFLOW_WEBHOOK_SECRET": SECRET, "SERVICE": "checkout",
           "VERSION": "v1.2.3", "ENVIRONMENT": "production", "IMAGE": "ghcr.io/acme/checkout:v1.2.3",
           "DELIVERY": "1234567890-1", "GITHUB_STEP_SUMMARY": str(summary), **frozen_clock(tmp_path)}
    posted = run_script(post["run"], env, tmp_path)
    assert posted.returncode == 0, posted.stdout + posted.stderr
    gate_env = {**{k: v for k, v in env.items() if k != "CANARYFLOW_WEBHOOK_SECRET"}, **gate["env"],
                "CANARYFLOW_WEBHOOK_URL": served.url}

    # The clock is frozen: with no time to wait, a release still going on is exit 3 after one look.
    waited = run_script(gate["run"], {**gate_env, "WAIT_TIMEOUT_SECONDS": "0"}, tmp_path)
    assert waited.returncode == 3 and "still Scheduled after 0s; the release goes on" in waited.stdout, waited.stderr

    [run] = served.starter.runs.values()
    served.starter.end(run["id"], Failed(name="Refused", message="refused: no Prometheus answered"))
    waited = run_script(gate["run"], gate_env, tmp_path)
    assert waited.returncode == 2, waited.stdout + waited.stderr
    assert "refused: no Prometheus answered; nothing was changed" in summary.read_text()

    served.starter.end(run["id"], Completed())
    assert run_script(gate["run"], gate_env, tmp_path).returncode == 0
    # The token reads the run's outcome; it is masked in the job's log and is not the secret.
    token = json.loads((tmp_path / "response.json").read_text())["status_token"]
    assert f"::add-mask::{token}" in waited.stdout and SECRET not in waited.stdout + waited.stderr
