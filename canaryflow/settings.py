"""Where canaryflow finds its surroundings: Prometheus, the Pushgateway, the platform endpoints.

These are properties of the installation, not of one release, so they live apart from the release
spec and come from the environment (``CANARYFLOW_*``) or an explicit constructor call.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from canaryflow.dashboards import DEFAULT_UID
from canaryflow.errors import ConfigError

ENV_PREFIX = "CANARYFLOW_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    prometheus_url: str = Field(default="http://127.0.0.1:9090", description="Prometheus used for analysis")
    prometheus_timeout_seconds: float = Field(default=5.0, gt=0,
                                              description="Per query; a timeout is an ERROR verdict")
    pushgateway_url: str | None = Field(default=None,
                                        description="Push the pipeline metrics there after every task")
    metrics_port: int | None = Field(default=None, ge=1, le=65535,
                                     description="Also serve the pipeline metrics on this port (long-lived workers)")
    local_controller_url: str = Field(default="http://127.0.0.1:8080",
                                      description="The local platform's controller")
    grafana_url: str | None = Field(
        default=None, description="Grafana base URL; unset, dashboard updates and annotations are skipped")
    grafana_token: SecretStr | None = Field(
        default=None, description="Service-account token (Editor, or dashboards:write + annotations:write)")
    grafana_token_block: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding the token, used when the token is unset")
    grafana_dashboard_uid: str = Field(default=DEFAULT_UID, description="The deployment dashboard")
    grafana_folder_uid: str | None = Field(default=None,
                                           description="Folder the dashboard is saved in; unset: General")
    grafana_timeout_seconds: float = Field(default=5.0, gt=0, description="Per Grafana request")
    # Kubernetes platform: a kubeconfig file and context (None: $KUBECONFIG, else ~/.kube/config, and
    # its current context), or the pod's service account when running in the cluster.
    kubeconfig: str | None = Field(default=None,
                                   description="Kubeconfig file; unset: $KUBECONFIG, else ~/.kube/config")
    kube_context: str | None = Field(default=None, description="Context to use; unset: the file's current context")
    kube_in_cluster: bool = Field(default=False,
                                  description="Use the pod's service account instead of a kubeconfig (the worker)")


def load_settings() -> Settings:
    """Settings from the environment, or a ``ConfigError`` naming each bad variable.

    A misspelt variable (``CANARYFLOW_PROMETHEUS_ULR``) is refused too: silently ignored, it would
    point the release at the default Prometheus instead of the intended one.
    """
    from canaryflow.envcheck import check_variable_names

    check_variable_names()
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {ENV_PREFIX}{'__'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid settings:\n" + "\n".join(lines),
                          fields=tuple(".".join(map(str, e["loc"])) for e in exc.errors())) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests and ``local`` commands clear the cache)."""
    return load_settings()
