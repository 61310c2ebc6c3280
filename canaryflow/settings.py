"""Where canaryflow finds its surroundings: Prometheus, the Pushgateway, the platform endpoints.

These are properties of the installation, not of one release, so they live apart from the release
spec and come from the environment (``CANARYFLOW_*``) or an explicit constructor call.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CANARYFLOW_", extra="ignore")

    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_timeout_seconds: float = Field(default=5.0, gt=0)
    pushgateway_url: str | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    local_controller_url: str = "http://127.0.0.1:8080"
    grafana_url: str | None = None
    grafana_token: SecretStr | None = None
    grafana_token_block: str | None = None  # name of a Prefect Secret block holding the token
    grafana_dashboard_uid: str = "canaryflow-deployments"
    grafana_folder_uid: str | None = None
    grafana_timeout_seconds: float = Field(default=5.0, gt=0)
    # Kubernetes platform: a kubeconfig file and context (None: $KUBECONFIG, else ~/.kube/config, and
    # its current context), or the pod's service account when running in the cluster.
    kubeconfig: str | None = None
    kube_context: str | None = None
    kube_in_cluster: bool = False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
