"""``stator demo``: the reference system on one machine.

Starts the dev registry, three ``stator run`` instances registering with it (Consul agent API, HTTP checks on
``/-/ready``), and - when a ``prometheus`` binary is on PATH - Prometheus discovering them with
``consul_sd_configs``. Prints where everything is, then waits. SIGINT/SIGTERM (Ctrl-C) stops the instances first
(so they deregister while the registry still runs), then Prometheus, then the registry.

Children run in their own sessions: a Ctrl-C in the terminal reaches only the demo, which sends each child
exactly one SIGTERM. A second signal to a stator process means "exit now, skip deregistration".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
import orjson

from stator.discover import EXAMPLE_DOCUMENT

DEFAULT_REGISTRY_PORT = 8500
DEFAULT_BASE_PORT = 8087
DEFAULT_PROMETHEUS = "127.0.0.1:9090"
STOP_TIMEOUT = 20.0  # above STATOR_SHUTDOWN_TIMEOUT's default (15s): a clean stop is always waited for


class Child:
    """One process of the demo, its name and how to stop it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], stdout: IO[bytes] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,  # our signals only: see the module docstring
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


DISCOVER_KEY = "stator/services"


def seed_kv(addr: str, key: str, doc: Any) -> None:
    """Store ``doc`` as JSON at Consul KV ``key`` (the discovery demo's services document).

    ``addr`` is the registry's base URL (``http://127.0.0.1:8500``).
    """
    response = httpx.put(f"{addr.rstrip('/')}/v1/kv/{key.lstrip('/')}", content=orjson.dumps(doc), timeout=5)
    response.raise_for_status()


def prometheus_config(registry: str, service: str, file_sd: Path | None = None) -> str:
    """Prometheus scrape config discovering ``service`` instances through the registry's Consul API.

    With ``file_sd``, targets come from that file instead (see :class:`FileSDBridge`); the relabelling is the
    same because the file carries the same ``__meta_consul_*`` labels.
    """
    if file_sd is None:
        discovery = f"""    consul_sd_configs:
      - server: {registry}
        services: [{service}]
        refresh_interval: 5s
"""
    else:
        discovery = f"""    file_sd_configs:
      - files: [{file_sd}]
        refresh_interval: 5s
"""
    return f"""# Written by stator demo.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: {service}
{discovery}    relabel_configs:
      # Instances opt in to scraping with the 'metrics' tag (STATOR_SERVICE_TAGS).
      - source_labels: [__meta_consul_tags]
        regex: .*,metrics,.*
        action: keep
      - source_labels: [__meta_consul_service]
        target_label: service
      - source_labels: [__meta_consul_service_id]
        target_label: instance_id
      # The metrics path and (with STATOR_OPS_PORT) port come from the registration's Meta.
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        regex: (.+)
        target_label: __metrics_path__
      - source_labels: [__meta_consul_service_address, __meta_consul_service_metadata_metrics_port]
        regex: (.+);(.+)
        replacement: $1:$2
        target_label: __address__
"""


def has_consul_sd(workdir: Path) -> bool:
    """Whether this Prometheus build accepts ``consul_sd_configs`` (Debian's 2.42 package is built without it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return True  # upstream builds all have it; a failure would show in the Prometheus log
    probe = workdir / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: p\n    consul_sd_configs:\n      - server: 127.0.0.1:1\n")
    result = subprocess.run([promtool, "check", "config", str(probe)], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def _aggregated_status(checks: list[dict[str, Any]]) -> str:
    statuses = {str(c.get("Status")) for c in checks}
    for status in ("critical", "warning"):
        if status in statuses:
            return status
    return "passing"


def file_sd_targets(entries: list[dict[str, Any]], datacenter: str = "dc1") -> list[dict[str, Any]]:
    """/v1/health/service entries as file_sd target groups labelled the way consul_sd labels them."""
    groups = []
    for entry in entries:
        node = entry.get("Node") or {}
        svc = entry.get("Service") or {}
        address = str(svc.get("Address") or node.get("Address") or "")
        port = str(svc.get("Port", ""))
        tags = [str(t) for t in svc.get("Tags") or []]
        labels = {
            "__meta_consul_service": str(svc.get("Service", "")),
            "__meta_consul_service_id": str(svc.get("ID", "")),
            "__meta_consul_service_address": address,
            "__meta_consul_service_port": port,
            "__meta_consul_tags": "," + ",".join(tags) + ",",
            "__meta_consul_health": _aggregated_status(entry.get("Checks") or []),
            "__meta_consul_node": str(node.get("Node", "")),
            "__meta_consul_address": str(node.get("Address", "")),
            "__meta_consul_dc": str(node.get("Datacenter") or datacenter),
        }
        for key, value in (svc.get("Meta") or {}).items():
            labels[f"__meta_consul_service_metadata_{key}"] = str(value)
        host = f"[{address}]" if ":" in address else address
        groups.append({"targets": [f"{host}:{port}"], "labels": labels})
    return groups


class FileSDBridge(threading.Thread):
    """Feeds Prometheus file_sd from the registry's health endpoint (blocking queries), for Prometheus builds
    without consul_sd. A demo stand-in: with a full Prometheus, ``consul_sd_configs`` does this itself."""

    def __init__(self, registry_url: str, service: str, path: Path) -> None:
        super().__init__(name="file-sd-bridge", daemon=True)
        self.url = f"{registry_url}/v1/health/service/{service}"
        self.path = path
        self.stopping = threading.Event()
        path.write_text("[]")

    def run(self) -> None:
        index = 0
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    params = {"index": str(index), "wait": "2s"} if index else {}
                    response = client.get(self.url, params=params)
                    response.raise_for_status()
                    new_index = int(response.headers.get("X-Consul-Index", "0"))
                    index = new_index if new_index >= index else 0  # an index going backwards: start over
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_bytes(orjson.dumps(file_sd_targets(response.json())))
                    os.replace(tmp, self.path)  # Prometheus must never read a half-written file
                except (httpx.HTTPError, ValueError, OSError):
                    self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stator demo",
        description="Run the dev registry, stator instances registering with it, and Prometheus if installed.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface everything listens on (default 127.0.0.1)")
    p.add_argument("--registry-port", type=int, default=DEFAULT_REGISTRY_PORT, help="dev registry port (default 8500)")
    p.add_argument("--instances", type=int, default=3, help="number of stator instances (default 3)")
    p.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help="port of the first instance, the others follow (default 8087; 0 = any free ports)",
    )
    p.add_argument(
        "--prometheus",
        default=DEFAULT_PROMETHEUS,
        help="HOST:PORT for Prometheus when a prometheus binary is on PATH (default 127.0.0.1:9090)",
    )
    p.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even if installed")
    p.add_argument("--service", default="stator", help="service name the instances register (default stator)")
    return p


def _wait_registry(url: str, proc: Child, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive():
        try:
            if httpx.get(f"{url}/v1/status/leader", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _passing(url: str, service: str) -> list[dict[str, Any]]:
    try:
        response = httpx.get(f"{url}/v1/health/service/{service}", params={"passing": ""}, timeout=2)
        entries = response.json() if response.status_code == 200 else []
    except (httpx.HTTPError, orjson.JSONDecodeError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed by argparse
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2

    stop_requested: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="stator-demo-"))
    registry_url = f"http://{args.host}:{args.registry_port}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("STATOR_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    instances: list[Child] = []
    bridge: FileSDBridge | None = None
    others: list[Child] = []  # prometheus, then the registry: stopped after the instances
    code = 0
    try:
        registry = Child(
            "registry",
            [sys.executable, "-m", "stator", "registry", "--listen", f"{args.host}:{args.registry_port}"],
            base_env,
        )
        others.append(registry)
        if not _wait_registry(registry_url, registry):
            print(f"stator demo: the dev registry did not start on {registry_url}", file=sys.stderr, flush=True)
            return 1

        # The ConfigState half of the demo: an example services document in the registry's KV, watched by every
        # instance with blocking queries (curl -X PUT --data-binary @doc.json <registry>/v1/kv/<key> to change it).
        seed_kv(registry_url, DISCOVER_KEY, list(EXAMPLE_DOCUMENT))

        for i in range(args.instances):
            port = 0 if args.base_port == 0 else args.base_port + i
            env = {
                **base_env,
                "STATOR_SERVICE_NAME": args.service,
                "STATOR_REGISTRY": "consul",
                "STATOR_CONSUL_ADDR": registry_url,
                "STATOR_HTTP_HOST": args.host,
                "STATOR_HTTP_PORT": str(port),
                "STATOR_ROSTER_CHECK_INTERVAL": "2s",
                "STATOR_DISCOVER_SOURCE": "consul",
                "STATOR_DISCOVER_KEY": DISCOVER_KEY,
            }
            instances.append(Child(f"instance-{i + 1}", [sys.executable, "-m", "stator", "run"], env))

        prometheus_url = None
        binary = shutil.which("prometheus")
        if binary and not args.no_prometheus:
            config = workdir / "prometheus.yml"
            file_sd = None
            if not has_consul_sd(workdir):
                file_sd = workdir / "consul-targets.json"
                bridge = FileSDBridge(registry_url, args.service, file_sd)
                bridge.start()
                print(
                    "stator demo: this prometheus has no consul_sd_configs (Debian's build); feeding it file_sd"
                    " from the registry instead",
                    flush=True,
                )
            config.write_text(prometheus_config(f"{args.host}:{args.registry_port}", args.service, file_sd))
            log = (workdir / "prometheus.log").open("wb")
            prom = Child(
                "prometheus",
                [
                    binary,
                    f"--config.file={config}",
                    f"--web.listen-address={args.prometheus}",
                    f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                ],
                base_env,
                stdout=log,
            )
            log.close()  # the child has its own copy
            others.insert(0, prom)
            prometheus_url = f"http://{args.prometheus}"

        deadline = time.monotonic() + 30
        passing: list[dict[str, Any]] = []
        while not stop_requested and time.monotonic() < deadline and all(c.alive() for c in instances):
            passing = _passing(registry_url, args.service)
            if len(passing) >= args.instances:
                break
            time.sleep(0.2)
        if not stop_requested:
            _print_summary(args, registry_url, passing, prometheus_url, workdir)

        while not stop_requested:
            dead = [c for c in [*instances, *others] if not c.alive()]
            if dead:
                names = ", ".join(f"{c.name} (exit {c.proc.returncode})" for c in dead)
                print(f"stator demo: {names} stopped unexpectedly; shutting down", file=sys.stderr, flush=True)
                code = 1
                break
            time.sleep(0.2)
    finally:
        _shutdown(instances, others)
        if bridge is not None:
            bridge.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(workdir, ignore_errors=True)
    print("stator demo: stopped", flush=True)
    return code


def _print_summary(
    args: argparse.Namespace,
    registry_url: str,
    passing: list[dict[str, Any]],
    prometheus_url: str | None,
    workdir: Path,
) -> None:
    lines = [
        "",
        f"stator demo ready: {len(passing)} of {args.instances} instances passing",
        f"  registry     {registry_url}",
        f"               curl '{registry_url}/v1/health/service/{args.service}?passing'",
    ]
    for entry in passing:
        svc = entry.get("Service") or {}
        base = f"http://{svc.get('Address')}:{svc.get('Port')}"
        lines.append(f"  instance     {base}   ({svc.get('ID')}: {base}/monitor, {base}/metrics)")
    if passing:
        svc = passing[0].get("Service") or {}
        lines.append(
            f"  discovery    curl http://{svc.get('Address')}:{svc.get('Port')}/services"
            f"   (KV key {DISCOVER_KEY}; change it with"
            f" curl -X PUT --data-binary @doc.json {registry_url}/v1/kv/{DISCOVER_KEY})"
        )
    if prometheus_url:
        lines.append(f"  prometheus   {prometheus_url}/targets   (config in {workdir / 'prometheus.yml'})")
    else:
        lines.append("  prometheus   not started (no prometheus on PATH, or --no-prometheus)")
    lines.append("Ctrl-C stops everything (instances deregister first).")
    print("\n".join(lines), flush=True)


def _shutdown(instances: list[Child], others: list[Child]) -> None:
    # Instances first, all at once: each deregisters from the registry, which must still be running.
    for child in instances:
        child.terminate()
    for child in instances:
        child.wait(STOP_TIMEOUT)
    for child in others:
        child.terminate()
        child.wait(STOP_TIMEOUT)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
