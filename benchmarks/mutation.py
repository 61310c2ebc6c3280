"""How many hand-made bugs the fast tests catch in the safety-critical core: a mutation score per module.

    python benchmarks/mutation.py [--module NAME ...] [--keep DIR]

For each core module, mutmut (``pip install mutmut``) makes small changes to its code (a ``<``
for a ``<=``, a ``True`` for a ``False``, a deleted call) and runs that module's fast unit tests
against each one. A mutant the tests fail on is *killed*; one they pass is *survived* (a change
of behaviour nobody would notice); *no tests* means no selected test even runs that line. The
score is killed / (killed + survived + no tests + timeout), per module.

Run on demand, never in the suite: it re-runs the tests hundreds of times. Each module is
mutated in its own copy of the repository under a temporary directory (mutmut writes a
``mutants/`` tree and needs its configuration beside the code), so the checkout is left alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("canaryflow", "flows", "tasks", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    """One mutated module and the fast tests that are meant to catch its bugs."""

    module: str
    tests: tuple[str, ...]


CORE = (
    Target("canaryflow/judge.py", ("tests/unit/test_judge.py", "tests/unit/test_judge_operator.py",
                                   "tests/unit/test_judge_decisions.py")),
    Target("flows/release.py", ("tests/unit/flows",)),
    Target("canaryflow/retries.py", ("tests/unit/test_retries.py", "tests/unit/test_spec_refusals.py")),
    Target("canaryflow/spec.py", ("tests/unit/test_spec.py", "tests/unit/test_spec_finite.py",
                                  "tests/unit/test_spec_refusals.py")),
    Target("canaryflow/analysis.py", ("tests/unit/test_analysis.py",)),
    Target("canaryflow/assess/ratio.py", ("tests/unit/assess/test_ratio.py",)),
    Target("canaryflow/assess/latency.py", ("tests/unit/assess/test_latency.py",)),
    Target("canaryflow/assess/traffic.py", ("tests/unit/assess/test_traffic.py",)),
    Target("canaryflow/assess/threshold.py", ("tests/unit/assess/test_threshold.py",)),
    Target("canaryflow/prometheus.py", ("tests/unit/test_prometheus.py",)),
    Target("canaryflow/webhook/signatures.py", ("tests/unit/webhook/test_signatures.py",)),
    Target("canaryflow/webhook/app.py", ("tests/unit/webhook/test_app.py", "tests/unit/webhook/test_app_properties.py",
                                          "tests/unit/webhook/test_fleet_route.py")),
    # The platforms' rollback paths: the local controller (weight to 0 before the canary stops) and
    # the Kubernetes platform driven through the official client against the API emulator.
    Target("canaryflow/platforms/local.py", ("tests/unit/test_local_platform_client.py",)),
    Target("canaryflow/local/controller.py", ("tests/unit/test_local_controller_faults.py",
                                              "tests/unit/test_local_controller_order.py",
                                              "tests/unit/test_local_controller_services.py",
                                              "tests/unit/test_local_controller_state.py")),
    Target("canaryflow/platforms/kubernetes.py", ("tests/integration/kube/test_platform.py",)),
)


def _lines(values: tuple[str, ...] | list[str]) -> str:
    return "\n" + "\n".join(f"    {v}" for v in values)


def _configure(copy: Path, target: Target) -> None:
    package = target.module.split("/")[0]
    others = [name for name in COPIED if name not in (package, "tests", "pyproject.toml")]
    (copy / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths={package}\n"
        f"only_mutate={target.module}\n"
        f"also_copy={_lines(others)}\n"
        "pytest_add_cli_args=-p no:cacheprovider -q\n"
        f"pytest_add_cli_args_test_selection={_lines(target.tests)}\n"
        "use_git_change_detection=false\n"
    )


def mutate(target: Target, *, workdir: Path, mutmut: str) -> dict[str, int | float | str]:
    copy = workdir / target.module.replace("/", "_")
    copy.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "mutants"))
        else:
            shutil.copy2(source, copy / name)
    _configure(copy, target)
    started = time.monotonic()
    with open(copy / "mutmut.log", "w") as log:
        subprocess.run([mutmut, "run"], cwd=copy, stdout=log, stderr=subprocess.STDOUT, check=False)
        subprocess.run([mutmut, "export-cicd-stats"], cwd=copy, stdout=log, stderr=subprocess.STDOUT, check=False)
    stats_file = copy / "mutants" / "mutmut-cicd-stats.json"
    if not stats_file.exists():
        return {"module": target.module, "error": f"mutmut did not finish; see {copy / 'mutmut.log'}"}
    stats = json.loads(stats_file.read_text())
    judged = stats["killed"] + stats["survived"] + stats["no_tests"] + stats["timeout"]
    return {"module": target.module, **{k: stats[k] for k in ("killed", "survived", "no_tests", "timeout")},
            "score": stats["killed"] / judged if judged else float("nan"),
            "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", default=[],
                        help="only this module (repeatable), e.g. canaryflow/judge.py")
    parser.add_argument("--keep", type=Path, help="keep each module's copy (with mutmut's results) under DIR")
    args = parser.parse_args(argv)
    mutmut = shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    if not Path(mutmut).exists():
        print("mutmut is not installed: pip install mutmut", file=sys.stderr)
        return 2
    targets = [t for t in CORE if not args.module or t.module in args.module]
    if not targets:
        print(f"no such core module; choose from: {', '.join(t.module for t in CORE)}", file=sys.stderr)
        return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="canaryflow-mutation-"))
    print(f"{'module':34} {'killed':>6} {'survived':>8} {'no tests':>8} {'timeout':>7} {'score':>6} {'seconds':>7}")
    try:
        for target in targets:
            row = mutate(target, workdir=workdir, mutmut=mutmut)
            if "error" in row:
                print(f"{row['module']:34} {row['error']}")
                continue
            print(f"{row['module']:34} {row['killed']:>6} {row['survived']:>8} {row['no_tests']:>8} "
                  f"{row['timeout']:>7} {row['score']:>6.0%} {row['seconds']:>7}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"results kept under {workdir} (mutmut results / mutmut show NAME in each copy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
