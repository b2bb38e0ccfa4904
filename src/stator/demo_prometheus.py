"""The monitoring half of ``stator demo``: Prometheus's config (consul_sd, or file_sd fed by :class:`FileSDBridge`
for Prometheus builds without consul_sd, such as Debian's 2.42), the SLO rules it loads, and the Alertmanager it
sends alerts to.

Both discoveries select the same targets: every registered service carrying the ``metrics`` tag (the
``STATOR_SERVICE_TAGS`` default), so the demo's ``stator`` instances and its ``front`` instance are scraped alike,
and with the same ``__meta_consul_*`` labels, so one set of relabel rules serves both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

METRICS_TAG = "metrics"
JOB = "stator"
# Debian's prometheus-alertmanager package installs the binary under the package's name; upstream calls it
# alertmanager.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


def _q(value: str | Path) -> str:
    """``value`` as a YAML scalar that means exactly that string (a JSON string is valid YAML)."""
    return orjson.dumps(str(value)).decode()


def prometheus_config(
    registry: str,
    file_sd: Path | None = None,
    *,
    rule_files: Sequence[str | Path] = (),
    alertmanager: str | None = None,
    tag: str = METRICS_TAG,
) -> str:
    """Prometheus config scraping every service registered with ``tag`` in the registry (Consul API).

    With ``file_sd``, targets come from that file instead (see :class:`FileSDBridge`); the relabelling is the
    same because the file carries the same ``__meta_consul_*`` labels. ``rule_files`` are paths or globs of
    rule files to load (the generated SLO rules); ``alertmanager`` (HOST:PORT) is where alerts go.
    """
    if file_sd is None:
        discovery = f"""    consul_sd_configs:
      - server: {_q(registry)}
        tags: [{_q(tag)}]             # every service whose instances opt in to scraping, front included
        refresh_interval: 5s
"""
    else:
        discovery = f"""    file_sd_configs:
      - files: [{_q(file_sd)}]        # written by stator demo from the registry: services tagged {tag}
        refresh_interval: 5s
"""
    rules = ""
    if rule_files:
        rules = "rule_files:\n" + "".join(f"  - {_q(f)}\n" for f in rule_files)
    alerting = ""
    if alertmanager:
        alerting = f"""alerting:
  alertmanagers:
    - static_configs:
        - targets: [{_q(alertmanager)}]
"""
    return f"""# Written by stator demo.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
{rules}{alerting}scrape_configs:
  - job_name: {JOB}
{discovery}    relabel_configs:
      # Instances opt in to scraping with the '{tag}' tag (STATOR_SERVICE_TAGS).
      - source_labels: [__meta_consul_tags]
        regex: .*,{tag},.*
        action: keep
      - source_labels: [__meta_consul_service]
        target_label: service
      - source_labels: [__meta_consul_service_id]
        target_label: instance_id
      - source_labels: [__meta_consul_service_metadata_version]
        target_label: version
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


@dataclass(frozen=True)
class Monitoring:
    """Where the demo's monitoring files are: the SLO rules Prometheus loads and the Alertmanager config,
    both from the checkout's ``deploy/`` (``stator slo generate`` writes the rules)."""

    rule_files: tuple[Path, ...]
    alertmanager_config: Path | None

    @classmethod
    def find(cls, deploy: Path | None) -> Monitoring:
        if deploy is None:
            return cls((), None)
        rules = tuple(sorted((deploy / "prometheus" / "rules").glob("*.yml")))
        config = deploy / "alertmanager" / "alertmanager.yml"
        return cls(rules, config if config.is_file() else None)


def default_deploy_dir() -> Path | None:
    """``deploy/`` of the checkout this stator runs from (``make demo`` installs it editable), else of the
    current directory; None when neither has one (an installed wheel run elsewhere)."""
    for candidate in (Path(__file__).resolve().parents[2] / "deploy", Path.cwd() / "deploy"):
        if (candidate / "prometheus" / "rules").is_dir():
            return candidate
    return None


def alertmanager_binary() -> str | None:
    for name in ALERTMANAGER_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def alertmanager_args(binary: str, config: Path, listen: str, storage: Path) -> list[str]:
    """The Alertmanager command line: one instance, no cluster gossip port (an empty
    ``--cluster.listen-address`` turns clustering off, so nothing but ``listen`` is bound)."""
    return [
        binary,
        f"--config.file={config}",
        f"--web.listen-address={listen}",
        f"--storage.path={storage}",
        "--cluster.listen-address=",
    ]


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


def tagged(entries: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The health entries whose service instance carries ``tag`` (what consul_sd's ``tags:`` keeps)."""
    return [e for e in entries if tag in ((e.get("Service") or {}).get("Tags") or [])]


class FileSDBridge(threading.Thread):
    """Feeds Prometheus file_sd from the registry, for Prometheus builds without consul_sd. A demo stand-in:
    with a full Prometheus, ``consul_sd_configs`` does this itself.

    Selects what the consul_sd config selects — every instance, of any service, tagged ``tag`` — by holding a
    blocking query on ``/v1/catalog/services`` (a new service or instance answers it at once) and reading each
    tagged service's health entries after every answer; the query's ``wait`` bounds how stale a health status
    can get. The file is replaced atomically and only when its content changes.
    """

    def __init__(self, registry_url: str, path: Path, tag: str = METRICS_TAG, wait: str = "2s") -> None:
        super().__init__(name="file-sd-bridge", daemon=True)
        self.url = registry_url.rstrip("/")
        self.path = path
        self.tag = tag
        self.wait = wait
        self.stopping = threading.Event()
        self._written = b"[]"
        path.write_bytes(self._written)

    def run(self) -> None:
        index = 0
        with httpx.Client(timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    params = {"index": str(index), "wait": self.wait} if index else {}
                    response = client.get(f"{self.url}/v1/catalog/services", params=params)
                    response.raise_for_status()
                    new_index = int(response.headers.get("X-Consul-Index", "0"))
                    index = new_index if new_index >= index else 0  # an index going backwards: start over
                    services: dict[str, list[str]] = response.json()
                    entries: list[dict[str, Any]] = []
                    for name in sorted(n for n, tags in services.items() if self.tag in (tags or [])):
                        health = client.get(f"{self.url}/v1/health/service/{quote(name, safe='')}")
                        health.raise_for_status()
                        entries += tagged(health.json(), self.tag)
                    self._write(orjson.dumps(file_sd_targets(entries)))
                except (httpx.HTTPError, ValueError, TypeError, AttributeError, OSError):
                    index = 0
                    self.stopping.wait(1.0)

    def _write(self, content: bytes) -> None:
        if content == self._written:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, self.path)  # Prometheus must never read a half-written file
        self._written = content

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
