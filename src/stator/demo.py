"""``stator demo``: the reference system on one machine.

Starts the dev registry, three ``stator run`` instances registering with it (Consul agent API, HTTP checks on
``/-/ready``), a fourth, ``front``, that forwards ``POST /sum`` and ``/concat`` to them through
``service.upstream`` (docs/upstream.md) and - when a ``prometheus`` binary is on PATH - Prometheus discovering
all four (every service tagged ``metrics``) and loading the SLO rules of ``deploy/prometheus/rules``, with
Alertmanager (Debian's ``prometheus-alertmanager``, when installed) receiving its alerts. Prints where everything
is, then sends the front a request every 200 ms and every 5 s prints which instance served how many (see
:mod:`stator.demo_traffic`). SIGINT/SIGTERM/SIGHUP (Ctrl-C, a closed terminal) stop the traffic, then the
instances (so they deregister while the registry still runs), then Prometheus and Alertmanager, then the registry;
a second signal makes the instances exit at once.

No orphans, whatever happens to the demo:

* Children run in their own sessions: a Ctrl-C in the terminal reaches only the demo, which sends each child
  exactly one SIGTERM (a second signal to a stator process means "exit now, skip deregistration").
* Each child is started with the Linux parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``, set between
  fork and exec): if the demo dies without stopping them — SIGKILL, a crash, the OOM killer — the kernel sends
  each child SIGTERM. Why this and not a pipe the child watches for EOF: it covers children we do not write
  (Prometheus, a ``stator run`` that knows nothing of the demo) with no wrapper process, and costs nothing at
  run time. Its one trap — the signal fires when the *thread* that forked the child exits, not the process — is
  avoided by starting every child from the main thread, which lives as long as the demo; the race of a demo
  dying before the child's ``prctl`` is closed by checking ``getppid()`` right after it. Elsewhere (macOS) the
  demo still stops its children on every signal it can catch.
* Before starting anything, every port it needs is checked: a taken one stops the demo with a message naming
  the port and, where ``/proc`` shows it, the process holding it.
* "ready" and "N of N stator instances passing" count only the demo's own instances (their service ids carry the
  demo's id), never whatever a registry on that port lists; the front is reported on its own line.
* Threads (the file_sd bridge, the traffic) start only after the last child is forked: forking a threaded
  process with a ``preexec_fn`` can deadlock the child on a lock another thread held.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from stator.demo_children import (
    PID_FILE,
    WORKDIR_PREFIX,
    Child,
    remove_stale_workdirs,
    remove_workdir,
    stop_in_order,
)
from stator.demo_prometheus import (
    FileSDBridge,
    Monitoring,
    alertmanager_args,
    alertmanager_binary,
    default_deploy_dir,
    file_sd_targets,
    has_consul_sd,
    prometheus_config,
)
from stator.demo_terminal import Console
from stator.demo_traffic import Traffic
from stator.discover import EXAMPLE_DOCUMENT
from stator.ids import short_id
from stator.ports import port_free, port_holder

__all__ = [
    "FileSDBridge",
    "file_sd_targets",
    "has_consul_sd",
    "main",
    "passing_instances",
    "prometheus_config",
    "remove_stale_workdirs",
]

DEFAULT_REGISTRY_PORT = 8500
DEFAULT_BASE_PORT = 8087
DEFAULT_PROMETHEUS = "127.0.0.1:9090"
DEFAULT_ALERTMANAGER = "127.0.0.1:9093"
FRONT = "front"  # the front instance's service name (and spec name); it calls the --service instances
READY_TIMEOUT = 30.0
# Signals that stop the demo in order. Any other death (SIGKILL included) reaches the children as SIGTERM
# through the parent-death signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class InstanceSpec:
    """One ``stator run`` of the demo. ``env`` adds to (and overrides) the common instance environment, so a
    differently configured instance (a front end calling the others, ...) is one more spec; its
    ``STATOR_SERVICE_NAME``, if set, is the service it registers as (and names its service id)."""

    name: str
    port: int  # 0 = any free port
    env: Mapping[str, str] = field(default_factory=dict)
    counted: bool = True  # part of "N of N <service> instances passing"

    def service(self, default: str) -> str:
        return self.env.get("STATOR_SERVICE_NAME", default)


@dataclass(frozen=True)
class Plan:
    """What the demo will start, decided before anything is started (so every port is checked first)."""

    demo_id: str
    registry_url: str
    instances: tuple[InstanceSpec, ...]
    prometheus: str | None  # HOST:PORT, or None when not started
    alertmanager: str | None = None  # HOST:PORT, or None when not started

    def service_id(self, service: str, spec: InstanceSpec) -> str:
        # The demo's id in every instance id: what the demo counts as its own in the registry.
        return f"{spec.service(service)}-{self.demo_id}-{spec.name}"

    def front(self) -> InstanceSpec | None:
        return next((s for s in self.instances if s.name == FRONT), None)

    def ports(self, args: argparse.Namespace) -> list[tuple[str, int, str]]:
        """(host, port, what) for every fixed port the demo will bind."""
        out = [(args.host, args.registry_port, "dev registry (--registry-port)")]
        for s in self.instances:
            if s.port:
                offset = s.port - args.base_port
                out.append((args.host, s.port, f"{s.name} (--base-port{f' + {offset}' if offset else ''})"))
        for address, what in ((self.prometheus, "prometheus"), (self.alertmanager, "alertmanager")):
            if address:
                host, _, port = address.rpartition(":")
                out.append((host.strip("[]") or "0.0.0.0", int(port), f"{what} (--{what})"))
        return out


def make_plan(args: argparse.Namespace, prometheus_binary: str | None, alertmanager_binary: str | None = None) -> Plan:
    """The instances (``--instances`` of ``--service``, then the front on the next port), Prometheus when its
    binary was found, Alertmanager when its binary was found and Prometheus runs (nothing else would send it
    alerts)."""

    def port(offset: int) -> int:
        return 0 if args.base_port == 0 else args.base_port + offset

    instances = [InstanceSpec(f"instance-{i + 1}", port(i)) for i in range(args.instances)]
    if not args.no_front:
        front_env = {"STATOR_SERVICE_NAME": FRONT, "STATOR_UPSTREAM_SERVICE": args.service}
        instances.append(InstanceSpec(FRONT, port(args.instances), front_env, counted=False))
    prometheus = args.prometheus if prometheus_binary and not args.no_prometheus else None
    alertmanager = args.alertmanager if prometheus and alertmanager_binary and not args.no_alertmanager else None
    return Plan(
        short_id(6).lower(), f"http://{args.host}:{args.registry_port}", tuple(instances), prometheus, alertmanager
    )


def instance_env(
    plan: Plan, spec: InstanceSpec, args: argparse.Namespace, base_env: Mapping[str, str]
) -> dict[str, str]:
    return {
        **base_env,
        "STATOR_SERVICE_NAME": args.service,
        "STATOR_SERVICE_ID": plan.service_id(args.service, spec),
        "STATOR_REGISTRY": "consul",
        "STATOR_CONSUL_ADDR": plan.registry_url,
        "STATOR_HTTP_HOST": args.host,
        "STATOR_HTTP_PORT": str(spec.port),
        # The traffic would bury the terminal under two access-log lines (front, then backend) per request.
        "STATOR_HTTP_ACCESS_LOG": "true" if args.access_log or args.no_traffic or args.no_front else "false",
        "STATOR_ROSTER_CHECK_INTERVAL": "2s",
        # Every caller here (the front, the file_sd bridge, consul_sd) follows the registry with blocking queries
        # and learns of a deregistration within milliseconds: 1s of lame duck shows it without making every
        # Ctrl-C wait out the 5s default.
        "STATOR_SHUTDOWN_DELAY": "1s",
        "STATOR_DISCOVER_SOURCE": "consul",
        "STATOR_DISCOVER_KEY": DISCOVER_KEY,
        **spec.env,
    }


def taken_ports(plan: Plan, args: argparse.Namespace) -> list[str]:
    """One line per port the demo needs that is not free, naming the process holding it where visible."""
    problems = []
    for host, port, what in plan.ports(args):
        if port_free(host, port):
            continue
        holder = port_holder(port)
        by = f" by {holder.describe()}" if holder is not None else ""
        problems.append(f"port {port} on {host} for the {what} is already in use{by}")
    return problems


DISCOVER_KEY = "stator/services"


def seed_kv(addr: str, key: str, doc: Any) -> None:
    """Store ``doc`` as JSON at Consul KV ``key`` (the discovery demo's services document).

    ``addr`` is the registry's base URL (``http://127.0.0.1:8500``).
    """
    response = httpx.put(f"{addr.rstrip('/')}/v1/kv/{key.lstrip('/')}", content=orjson.dumps(doc), timeout=5)
    response.raise_for_status()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stator demo",
        description="Run the dev registry, stator instances registering with it, a front instance calling them"
        " with steady traffic, and Prometheus (with the SLO rules) and Alertmanager if installed.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface everything listens on (default 127.0.0.1)")
    p.add_argument("--registry-port", type=int, default=DEFAULT_REGISTRY_PORT, help="dev registry port (default 8500)")
    p.add_argument("--instances", type=int, default=3, help="number of stator instances (default 3)")
    p.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="port of the first instance, the others then the front follow (default 8087, so the front is on"
        " 8090; 0 = any free ports)",
    )
    p.add_argument("--no-front", action="store_true", help="no front instance (and so no traffic)")
    p.add_argument("--no-traffic", action="store_true", help="do not send the front a request every 200 ms")
    p.add_argument("--access-log", action="store_true", help="keep the instances' access logs on despite the traffic")
    p.add_argument(
        "--prometheus",
        default=DEFAULT_PROMETHEUS,
        help="HOST:PORT for Prometheus when a prometheus binary is on PATH (default 127.0.0.1:9090)",
    )
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even if installed")
    p.add_argument(
        "--alertmanager",
        default=DEFAULT_ALERTMANAGER,
        help="HOST:PORT for Alertmanager when prometheus-alertmanager is on PATH (default 127.0.0.1:9093)",
    )
    p.add_argument("--no-alertmanager", action="store_true", help="do not start Alertmanager even if installed")
    p.add_argument(
        "--deploy-dir",
        type=Path,
        default=None,
        help="where the SLO rules (prometheus/rules/*.yml) and alertmanager/alertmanager.yml are (default: the"
        " checkout's deploy/)",
    )
    p.add_argument("--service", default="stator", help="service name the instances register (default stator)")
    p.add_argument(
        "--output",
        choices=("auto", "pretty", "raw"),
        default="auto",
        help="pretty: one line per event prefixed by the process, access lines summarised, each process's full log"
        " kept in a file; raw: every process's JSON lines as they come; auto (default): pretty on a terminal",
    )
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.service == FRONT and not args.no_front:
        parser.error(f"--service {FRONT} is the front instance's name (it would forward to itself); choose another")
    for option in ("prometheus", "alertmanager"):
        _, sep, port = getattr(args, option).rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            parser.error(f"--{option} must be HOST:PORT, not {getattr(args, option)!r}")
    if args.deploy_dir is not None and not args.deploy_dir.is_dir():
        parser.error(f"--deploy-dir {args.deploy_dir}: not a directory")


def _wait_registry(url: str, proc: Child, port: int, timeout: float = 15.0) -> bool:
    """Until the registry answers — and it is *our* child answering, where /proc can tell."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        try:
            if httpx.get(f"{url}/v1/status/leader", timeout=1).status_code == 200:
                holder = port_holder(port)
                if holder is None or holder.pid is None or holder.pid == proc.proc.pid:
                    return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def passing_instances(url: str, service: str, ids: set[str]) -> list[dict[str, Any]]:
    """Passing health entries of ``service`` whose service id is one of ``ids`` (the demo's own instances)."""
    try:
        response = httpx.get(f"{url}/v1/health/service/{service}", params={"passing": ""}, timeout=2)
        entries = response.json() if response.status_code == 200 else []
    except (httpx.HTTPError, orjson.JSONDecodeError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and (e.get("Service") or {}).get("ID") in ids]


def _say(text: str, *, error: bool = False) -> None:
    # After SIGHUP the terminal may be gone: a failed write must not stop the shutdown.
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if error else sys.stdout, flush=True)


@dataclass
class Started:
    """What is running, for the summary and the stop path."""

    instances: list[Child] = field(default_factory=list)
    others: list[Child] = field(default_factory=list)  # prometheus, then alertmanager: stopped after the instances
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    alertmanager_config: Path | None = None
    rule_files: tuple[Path, ...] = ()
    bridge: FileSDBridge | None = None


def _start_monitoring(
    started: Started,
    plan: Plan,
    args: argparse.Namespace,
    binaries: tuple[str, str | None],
    base_env: dict[str, str],
    workdir: Path,
) -> None:
    """Prometheus (consul_sd, or file_sd fed by a bridge started later) with the SLO rules, and Alertmanager."""
    assert plan.prometheus is not None
    binary, am_binary = binaries
    monitoring = Monitoring.find(args.deploy_dir or default_deploy_dir())
    if not monitoring.rule_files:
        _say("stator demo: no deploy/prometheus/rules/*.yml found (see --deploy-dir): Prometheus runs without rules")
    file_sd = None
    if not has_consul_sd(workdir):
        file_sd = workdir / "consul-targets.json"
        started.bridge = FileSDBridge(plan.registry_url, file_sd)  # started after the last child
        _say(
            "stator demo: this prometheus has no consul_sd_configs (Debian's build); feeding it file_sd"
            " from the registry instead"
        )
    if plan.alertmanager and am_binary and monitoring.alertmanager_config is not None:
        storage = workdir / "alertmanager-data"
        args_am = alertmanager_args(am_binary, monitoring.alertmanager_config, plan.alertmanager, storage)
        started.others.append(Child("alertmanager", args_am, base_env, log=workdir / "alertmanager.log"))
        started.alertmanager_url = f"http://{plan.alertmanager}"
        started.alertmanager_config = monitoring.alertmanager_config
    elif plan.alertmanager:
        _say("stator demo: no deploy/alertmanager/alertmanager.yml found (see --deploy-dir): no Alertmanager")
    config = workdir / "prometheus.yml"
    config.write_text(
        prometheus_config(
            f"{args.host}:{args.registry_port}",
            file_sd,
            rule_files=monitoring.rule_files,
            alertmanager=plan.alertmanager if started.alertmanager_url else None,
        )
    )
    prom_args = [
        binary,
        f"--config.file={config}",
        f"--web.listen-address={plan.prometheus}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
    ]
    # Prometheus first: it stops sending alerts before Alertmanager goes.
    started.others.insert(0, Child("prometheus", prom_args, base_env, log=workdir / "prometheus.log"))
    started.prometheus_url = f"http://{plan.prometheus}"
    started.rule_files = monitoring.rule_files


def _wait_ready(
    plan: Plan, args: argparse.Namespace, started: Started, stopping: list[int]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Until the counted instances and the front pass their checks (or READY_TIMEOUT, a signal, a death):
    (the counted instances passing, the front's health entry or None)."""
    ours = {plan.service_id(args.service, s) for s in plan.instances if s.counted}
    front = plan.front()
    front_id = {plan.service_id(args.service, front)} if front else set()
    deadline = time.monotonic() + READY_TIMEOUT
    passing: list[dict[str, Any]] = []
    front_entry: list[dict[str, Any]] = []
    while not stopping and time.monotonic() < deadline and all(c.alive() for c in started.instances):
        passing = passing_instances(plan.registry_url, args.service, ours)
        front_entry = passing_instances(plan.registry_url, FRONT, front_id) if front_id else []
        if len(passing) >= len(ours) and len(front_entry) >= len(front_id):
            break
        time.sleep(0.2)
    return passing, (front_entry[0] if front_entry else None)


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _check_args(parser, args)
    except SystemExit as exc:  # --help or a usage error, already printed by argparse
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2

    binary = shutil.which("prometheus")
    am_binary = alertmanager_binary()
    plan = make_plan(args, binary, am_binary)
    problems = taken_ports(plan, args)
    if problems:
        for problem in problems:
            _say(f"stator demo: {problem}", error=True)
        _say("stator demo: not started; stop what holds the port or choose another (see stator demo -h)", error=True)
        return 1

    stop_requested: list[int] = []
    started = Started()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)
        if len(stop_requested) == 2:  # a second signal: the instances skip deregistration and exit now
            for child in started.instances:
                child.terminate()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    remove_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (workdir / PID_FILE).write_text(str(os.getpid()))
    registry_url = plan.registry_url
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("STATOR_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    traffic: Traffic | None = None
    registry: list[Child] = []
    code = 0
    # --output pretty: each child writes to its own file there (kept after the demo); a console thread follows them.
    logs: Path | None = None
    console: Console | None = None
    if args.output == "pretty" or (args.output == "auto" and sys.stdout.isatty()):
        logs = Path(tempfile.mkdtemp(prefix="stator-logs-demo-"))
        tty = sys.stdout.isatty()
        console = Console(_say, colour=tty, columns=shutil.get_terminal_size().columns if tty else None)

    def log_of(name: str) -> Path | None:
        if logs is None or console is None:
            return None
        console.follow(name, logs / f"{name}.log")
        return logs / f"{name}.log"

    try:
        registry.append(
            Child(
                "registry",
                [sys.executable, "-m", "stator", "registry", "--listen", f"{args.host}:{args.registry_port}"],
                base_env,
                log=log_of("registry"),
            )
        )
        if not _wait_registry(registry_url, registry[0], args.registry_port):
            _say(f"stator demo: the dev registry did not start on {registry_url}", error=True)
            return 1

        # The ConfigState half of the demo: an example services document in the registry's KV, watched by every
        # instance with blocking queries (curl -X PUT --data-binary @doc.json <registry>/v1/kv/<key> to change it).
        seed_kv(registry_url, DISCOVER_KEY, list(EXAMPLE_DOCUMENT))

        if plan.prometheus and binary:
            _start_monitoring(started, plan, args, (binary, am_binary), base_env, workdir)
        for spec in plan.instances:
            env = instance_env(plan, spec, args, base_env)
            args_run = [sys.executable, "-m", "stator", "run"]
            started.instances.append(Child(spec.name, args_run, env, log=log_of(spec.name)))
        if started.bridge is not None:
            started.bridge.start()  # the first thread: every child was forked before it (see Child)
        if console is not None:
            for other in started.others:  # Prometheus, Alertmanager: their warnings and errors
                if other.log is not None:
                    console.follow(other.name, other.log, quiet_info=True)
            console.start()  # a thread too: after the last fork

        passing, front = _wait_ready(plan, args, started, stop_requested)
        if not stop_requested:
            _print_summary(args, plan, passing, front, started, workdir, logs)
        if not stop_requested and front is not None and not args.no_traffic:
            svc = front.get("Service") or {}
            traffic = Traffic(f"http://{_hostport(svc)}/sum", _say, source=FRONT)
            traffic.start()

        while not stop_requested:
            dead = [c for c in [*started.instances, *started.others, *registry] if not c.alive()]
            if dead:
                names = ", ".join(f"{c.name} (exit {c.proc.returncode})" for c in dead)
                _say(f"stator demo: {names} stopped unexpectedly; shutting down", error=True)
                for child in dead:
                    if tail := child.log_tail():
                        _say(f"  last lines of {child.name}'s log:\n{tail}", error=True)
                code = 1
                break
            time.sleep(0.2)
    finally:
        if traffic is not None:
            traffic.stop()  # before the front goes, or its last requests would be tallied as failures
        stop_in_order(started.instances, started.others)
        if started.bridge is not None:
            started.bridge.stop()  # Prometheus is gone: nothing reads the file any more
        stop_in_order([], registry)
        if console is not None:
            console.stop()  # the last lines: deregistrations, "stopped"
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_workdir(workdir)
    if logs is not None:
        _say(f"stator demo: the full log of every process is in {logs}")
    _say("stator demo: stopped")
    return code


def _hostport(svc: Mapping[str, Any]) -> str:
    address = str(svc.get("Address") or "127.0.0.1")
    return f"{f'[{address}]' if ':' in address else address}:{svc.get('Port')}"


def _print_summary(
    args: argparse.Namespace,
    plan: Plan,
    passing: list[dict[str, Any]],
    front: dict[str, Any] | None,
    started: Started,
    workdir: Path,
    logs: Path | None = None,
) -> None:
    expected = sum(1 for s in plan.instances if s.counted)
    registry_url = plan.registry_url
    lines = [
        "",
        f"stator demo ready: {len(passing)} of {expected} {args.service} instances passing",
        f"  registry      {registry_url}",
        f"                curl '{registry_url}/v1/health/service/{args.service}?passing'",
        f"  registry UI   {registry_url}/ui/",
    ]
    for entry in sorted(passing, key=lambda e: str((e.get("Service") or {}).get("ID"))):
        svc = entry.get("Service") or {}
        base = f"http://{_hostport(svc)}"
        lines.append(f"  instance      {base}   {svc.get('ID')}   ({base}/-/ui/, {base}/-/metrics)")
    if plan.front() is not None:
        if front is None:
            lines.append(f"  front         not passing within {READY_TIMEOUT:.0f}s (its log lines above say why)")
        else:
            svc = front.get("Service") or {}
            hostport = _hostport(svc)
            lines += [
                f"  front         http://{hostport}   {svc.get('ID')} → {args.service} (service.upstream)",
                f"""                curl -si -d '{{"a":1,"b":2}}' {hostport}/sum""",
                f"                curl {hostport}/-/monitor | jq .upstreams",
            ]
            if not args.no_traffic:
                lines.append(
                    "  traffic       POST /sum to the front every 200 ms; every 5 s one line: which instance"
                    " served how many (X-Served-By)"
                )
    if passing:
        hostport = _hostport(passing[0].get("Service") or {})
        lines += [
            f"  discovery     curl {hostport}/-/services   (KV key {DISCOVER_KEY}; change it with"
            f" curl -X PUT --data-binary @doc.json {registry_url}/v1/kv/{DISCOVER_KEY})",
            f"  profiling     go tool pprof -top 'http://{hostport}/-/debug/pprof/profile?seconds=10'",
            f"                http://{hostport}/-/debug/pprof/   (docs/profiling.md)",
        ]
    if started.prometheus_url:
        prom = started.prometheus_url
        files = started.rule_files
        rules = f"rules: {', '.join(f.name for f in files)} from {files[0].parent}" if files else "no rules"
        lines += [
            f"  prometheus    {prom}/targets   (config in {workdir / 'prometheus.yml'})",
            f"                {prom}/alerts   ({rules})",
            f"                {prom}/graph?g0.expr=slo:period_error_budget_remaining:ratio",
        ]
    else:
        lines.append("  prometheus    not started (no prometheus on PATH, or --no-prometheus)")
    if started.alertmanager_url:
        lines.append(f"  alertmanager  {started.alertmanager_url}   (config {started.alertmanager_config})")
    else:
        lines.append(
            "  alertmanager  not started (needs Prometheus and prometheus-alertmanager on PATH; or --no-alertmanager)"
        )
    if passing:
        base = f"http://{_hostport(passing[0].get('Service') or {})}"
        lines.append(f"  pages         {base}/-/ui/   (status)   {base}/-/ui/routes   {base}/-/ui/requests")
    if logs is not None:
        lines.append(f"  logs          {logs}/<process>.log   (the full JSON lines; access lines are summarised here)")
    lines.append("Ctrl-C stops everything (instances deregister first).")
    _say("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
