"""An in-process Kubernetes API server for tests, reached through the official client and a kubeconfig.

    with KubeEmulator(namespace="shop", role_manifest=Path("deployments/kubernetes/rbac.yaml")) as kube:
        apps = kubernetes.client.AppsV1Api(kube.api_client())

See tests/emulators/README.md for what it does not model.
"""

from .emulator import KubeEmulator
from .faults import Fault, Faults
from .rbac import PolicyRule, Rbac
from .server import AuditEntry

__all__ = ["AuditEntry", "Fault", "Faults", "KubeEmulator", "PolicyRule", "Rbac"]
