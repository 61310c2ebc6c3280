"""The package's boundaries, checked: the core never touches Prefect.

``canaryflow`` holds the spec, the judge, the platforms and the metric plumbing, and runs without
Prefect; ``flows/`` and ``tasks/`` wrap it for Prefect. A few modules of the package are adapters
that call Prefect's API (the CLI, the operator verbs, events, the webhook's starter): they import
it inside the functions that need it, so importing them stays free too. Two checks:

* every module of the package imports in a fresh interpreter where ``prefect`` cannot be
  imported at all;
* no module outside ``PREFECT_ADAPTERS`` mentions Prefect in an import statement, even a deferred
  one, so the core cannot grow a dependency on it unnoticed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import canaryflow

PACKAGE = Path(canaryflow.__file__).resolve().parent
ROOT = PACKAGE.parent

#: Modules that talk to a Prefect server, and why (imports deferred to the calls that need them).
PREFECT_ADAPTERS = {
    "canaryflow.cli": "the CLI starts flows and reads runs",
    "canaryflow.operate": "the CLI's helpers on the Prefect API",
    "canaryflow.status": "the status view reads runs, logs and artifacts from the Prefect API",
    "canaryflow.waiting": "`canaryflow wait` follows a run's state through the Prefect API",
    "canaryflow.control": "operator commands travel as Prefect Variables",
    "canaryflow.events": "release events are Prefect events",
    "canaryflow.automations": "the example automation is created on the Prefect server",
    "canaryflow.reconcile": "a lease is only stale when no live run holds it (asked of the Prefect API)",
    "canaryflow.kube.lease": "the lease names the flow run holding it",
    "canaryflow.webhook.starter": "deliveries start deployment runs",
    "canaryflow.webhook.config": "secrets may come from Prefect Secret blocks",
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def prefect_imports(path: Path) -> list[int]:
    """Line numbers of every ``import prefect...`` / ``from prefect... import``, at any depth."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "prefect" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "prefect":
            lines.append(node.lineno)
    return lines


def test_the_core_has_no_prefect_import_anywhere():
    offenders = {name: prefect_imports(path) for name, path in modules().items() if name not in PREFECT_ADAPTERS}
    assert {name: lines for name, lines in offenders.items() if lines} == {}


def test_the_adapters_list_names_modules_that_exist_and_do_use_prefect():
    found = modules()
    assert set(PREFECT_ADAPTERS) <= set(found), "an adapter listed here no longer exists"
    unused = [name for name in PREFECT_ADAPTERS if not prefect_imports(found[name])]
    assert unused == [], "adapters that no longer use Prefect belong to the core"


BLOCKED_IMPORT = """
import importlib, sys

class NoPrefect:
    def find_spec(self, name, path=None, target=None):
        if name == "prefect" or name.startswith("prefect."):
            raise ImportError(f"prefect is not importable here ({name})")
        return None

sys.meta_path.insert(0, NoPrefect())
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
assert "prefect" not in sys.modules
print("\\n".join(failed))
"""


def test_every_module_imports_where_prefect_cannot_be_imported():
    names = [name for name in modules() if not name.endswith("__main__")]  # __main__ runs the CLI
    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, *names], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert len(names) > 60  # the whole package was walked, not an empty list
