"""`LocalStack`: the whole local platform as one context manager.

Starts Pushgateway, the controller (running the stable version), Prometheus
(scraping the services through the controller's file_sd targets file) and a
load generator, all as real processes on 127.0.0.1 inside one work directory.
Everything is torn down on exit, including when the with-block raises or is
interrupted, so test runs never leak processes or ports; nor temporary
directories: a work directory the stack made itself is removed on exit.

``seed`` makes the random draws of the stack's own processes (routing, errors,
latencies, arrivals) repeatable: the controller and the load generator each get
a stream derived from it, and the controller derives one per service process.
Each process then draws the same sequence every run; which request meets which
draw still depends on timing (concurrent requests, probes), so a run repeats
its statistics exactly only where the order of requests is fixed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from canaryflow.local import procs
from canaryflow.local.catalog import resolve_catalog_path
from canaryflow.local.seeds import derive_seed, seed_flag
from canaryflow.local.services import PlannedService, ServicePlan, check_service_names, write_plans

READY_TIMEOUT_S = 30.0


def find_binary(*names: str) -> str:
    """First of ``names`` on PATH, or a RuntimeError saying what to install."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(f"none of {', '.join(names)} found on PATH; install Prometheus/Pushgateway")


def prometheus_config(*, scrape_interval: str, pushgateway: str, targets_file: Path,
                      rule_files: Sequence[str | Path] = (), alertmanager_url: str | None = None) -> dict:
    """Prometheus config scraping the Pushgateway and the file_sd service targets; firing alerts
    go to ``alertmanager_url`` when given."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {"job_name": "pushgateway", "honor_labels": True,
             "static_configs": [{"targets": [pushgateway]}]},
            {"job_name": "services",
             "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}]},
        ],
    }
    if rule_files:
        config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    if alertmanager_url:
        url = urlsplit(alertmanager_url)
        target: dict = {"scheme": url.scheme or "http", "static_configs": [{"targets": [url.netloc]}]}
        if url.path.strip("/"):
            target["path_prefix"] = url.path
        config["alerting"] = {"alertmanagers": [target]}
    return config


def _tail(path: Path, lines: int = 8) -> str:
    """Last lines of a log file, so start-up errors explain themselves."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _scraping_every_job(response) -> bool:
    if response.status_code != 200:
        return False
    jobs = {t["labels"].get("job") for t in response.json()["data"]["activeTargets"]}
    return {"pushgateway", "services"} <= jobs


class LocalStack:
    """Run the local platform for the duration of a ``with`` block.

    One service (``service``, ``stable``, ``catalog``, ``rps``) or several: ``services`` maps each
    name to its :class:`ServicePlan` and replaces those four. ``service``/``stable`` then name the
    first service, ``rps`` the load of all of them together.
    """

    def __init__(self, *, service: str = "checkout", stable: str = "v1",
                 catalog: str | Path | None = None, rps: float = 100,
                 services: Mapping[str, ServicePlan] | None = None,
                 scrape_interval: str = "1s", workdir: str | Path | None = None,
                 load_duration: float = 900, rule_files: Sequence[str | Path] = (),
                 alertmanager_url: str | None = None, seed: int | None = None) -> None:
        if services is not None:
            check_service_names(list(services))
            self.plans = {name: plan if isinstance(plan, ServicePlan) else ServicePlan.model_validate(plan)
                          for name, plan in services.items()}
            service = next(iter(self.plans))
            stable, catalog = self.plans[service].stable, self.plans[service].catalog
            rps = sum(p.rps for p in self.plans.values())
        else:
            self.plans = {service: ServicePlan(stable=stable, rps=rps,
                                               catalog=Path(catalog) if catalog is not None else None)}
        self._single = services is None
        self.service = service
        self.stable = stable
        self.catalog = resolve_catalog_path(catalog)
        self.rps = rps
        self.scrape_interval = scrape_interval
        self.load_duration = load_duration
        self.rule_files = list(rule_files)
        self.alertmanager_url = alertmanager_url
        self.seed = seed
        self._workdir_arg = workdir
        self.workdir: Path | None = None
        self._owns_workdir = False  # True when start() made a temporary one, which close() removes
        self.processes: dict[str, subprocess.Popen] = {}
        self.prometheus_url = self.pushgateway_url = self.controller_url = ""
        self._prometheus_port = 0

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        """Start every component in dependency order, waiting for each to be ready."""
        if self._workdir_arg:
            self.workdir = Path(self._workdir_arg).resolve()
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="canaryflow-stack-")).resolve()
            self._owns_workdir = True
        find_binary("prometheus")  # fail before starting anything if it is missing
        pushgateway_bin = find_binary("prometheus-pushgateway", "pushgateway")

        pg_port = procs.free_port()
        self.pushgateway_url = f"http://127.0.0.1:{pg_port}"
        self._start("pushgateway", [pushgateway_bin, f"--web.listen-address=127.0.0.1:{pg_port}",
                     # Debian's build persists to /var/lib/prometheus by default: keep each stack's own.
                     f"--persistence.file={self.workdir / 'pushgateway.data'}"],
                    self.pushgateway_url + "/-/ready")

        ctl_port = procs.free_port()
        targets = self.workdir / "targets.json"
        self.controller_url = f"http://127.0.0.1:{ctl_port}"
        self._start("controller", procs.python_module(
            "canaryflow.local.controller", *self._controller_services(),
            "--port", ctl_port, "--targets-file", targets,
            "--log-dir", self.workdir / "services", *seed_flag(derive_seed(self.seed, "controller"))),
            self.controller_url + "/-/healthz", env=procs.python_env())

        config = prometheus_config(scrape_interval=self.scrape_interval,
                                   pushgateway=f"127.0.0.1:{pg_port}", targets_file=targets,
                                   rule_files=self.rule_files, alertmanager_url=self.alertmanager_url)
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._prometheus_port = procs.free_port()
        self.prometheus_url = f"http://127.0.0.1:{self._prometheus_port}"
        self.start_prometheus()

        load = self._load_flags()
        if load:
            self.processes["loadgen"] = procs.spawn(procs.python_module(
                "canaryflow.local.loadgen", "--url", self.controller_url, *load,
                "--duration", self.load_duration, *seed_flag(derive_seed(self.seed, "loadgen"))),
                log_path=self.workdir / "loadgen.log", env=procs.python_env())

    def _started_workdir(self) -> Path:
        """The work directory, which ``start`` sets before anything runs in it."""
        if self.workdir is None:
            raise RuntimeError("the local stack is not started: it has no work directory yet")
        return self.workdir

    def _controller_services(self) -> list:
        """The controller's flags for the services: the one-service flags, or a services file."""
        if self._single:
            return ["--service", self.service, "--stable", self.stable, "--catalog", self.catalog,
                    "--slot-ports", f"{procs.free_port()},{procs.free_port()}"]
        path = self._started_workdir() / "services.json"
        write_plans(path, [PlannedService(service=name, stable=plan.stable,
                                          catalog=resolve_catalog_path(plan.catalog),
                                          slot_ports=(procs.free_port(), procs.free_port()))
                           for name, plan in self.plans.items()])
        return ["--services-file", path]

    def _load_flags(self) -> list:
        """One rate for the only service, or a ``--target NAME=RPS`` per loaded service."""
        if self._single:
            return ["--rps", self.rps] if self.rps and self.rps > 0 else []
        return [flag for name, plan in self.plans.items() if plan.rps > 0
                for flag in ("--target", f"{name}={plan.rps:g}")]

    def _start(self, name: str, args: list, ready_url: str, env=None) -> None:
        workdir = self._started_workdir()
        proc = procs.spawn([str(a) for a in args], log_path=workdir / f"{name}.log", env=env)
        self.processes[name] = proc
        try:
            procs.wait_http(ready_url, READY_TIMEOUT_S, proc=proc)
        except (RuntimeError, TimeoutError) as err:
            log = workdir / f"{name}.log"
            raise RuntimeError(f"{name} failed to start: {err}\n--- tail of {log} ---\n{_tail(log)}") from err

    def stop_prometheus(self) -> None:
        """Stop Prometheus, keeping its data dir and port for a later restart."""
        proc = self.processes.pop("prometheus", None)
        if proc is not None:
            procs.stop(proc, timeout=10)

    def start_prometheus(self) -> None:
        """(Re)start Prometheus on the same port and data dir and wait until ready."""
        if "prometheus" in self.processes:
            return
        workdir = self._started_workdir()
        self._start("prometheus", [
            find_binary("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self._prometheus_port}",
            "--web.enable-lifecycle",
        ], self.prometheus_url + "/-/ready")
        # Ready is not scraping: service discovery hands Prometheus its first targets only after
        # its 5 s update cycle. Wait for them, or the first seconds of a release see no data.
        procs.wait_http(self.prometheus_url + "/api/v1/targets", READY_TIMEOUT_S, ok=_scraping_every_job,
                        proc=self.processes["prometheus"], interval=0.25)

    @property
    def services(self) -> list[str]:
        return list(self.plans)

    def settings_env(self) -> dict[str, str]:
        """The ``CANARYFLOW_*`` settings that point releases at this stack."""
        return {
            "CANARYFLOW_PROMETHEUS_URL": self.prometheus_url,
            "CANARYFLOW_PUSHGATEWAY_URL": self.pushgateway_url,
            "CANARYFLOW_LOCAL_CONTROLLER_URL": self.controller_url,
        }

    def close(self) -> None:
        """Stop every process concurrently; idempotent and safe after a failed start.

        A work directory the caller passed in is kept (logs, Prometheus data) for inspection;
        pass one to keep the logs. A temporary one the stack made itself is removed: nobody
        else knows its name, so every run would otherwise leave one behind in /tmp. A failed
        start loses nothing by that, since its error already quotes the tail of the log.
        """
        running = list(self.processes.values())
        self.processes.clear()
        try:
            procs.stop_all(running, timeout=10)
        finally:
            for proc in running:  # a second pass in case stop_all was interrupted
                if proc.poll() is None:
                    procs.stop(proc, timeout=1)
            # Only now: a process still running could write into the tree while it is removed.
            if self._owns_workdir and self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
