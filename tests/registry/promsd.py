"""Prometheus 2.42's consul_sd discovery loop (discovery/consul/consul.go with consul/api v1.18), ported request
for request: what it asks the registry, how it treats indexes, how it turns answers into labels.

Why it exists: Debian's prometheus 2.42 is built *without* Consul SD ("Disable Consul SD until its Debian
package is back in shape", Debian changelog 2.33.5+ds1-4), and no other Prometheus build can be installed here.
This port drives the registry exactly as that code would and hands its target groups to the real Prometheus
through file_sd, so the scrape half still runs in real Prometheus. Where the real binary has Consul SD,
test_prometheus.py uses it directly instead.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

WATCH_TIMEOUT = "120000ms"  # the Go client sends time.Duration 2m as milliseconds
RETRY_INTERVAL = 15.0


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def aggregated_status(checks: list[dict[str, Any]]) -> str:
    """consul/api HealthChecks.AggregatedStatus."""
    warning = critical = maintenance = False
    for check in checks:
        cid = check["CheckID"]
        if cid == "_node_maintenance" or cid.startswith("_service_maintenance:"):
            maintenance = True
            continue
        status = check["Status"]
        if status == "passing":
            continue
        if status == "warning":
            warning = True
        elif status == "critical":
            critical = True
        else:
            return ""
    if maintenance:
        return "maintenance"
    if critical:
        return "critical"
    if warning:
        return "warning"
    return "passing"  # passing, or no checks at all


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class QueryError(Exception):
    pass


class ConsulSD:
    """One consul_sd_configs entry: ``server``, optional ``services``/``tags``, ``refresh_interval``."""

    def __init__(
        self,
        server: str,
        on_update: Callable[[dict[str, list[dict[str, str]]]], None],
        *,
        refresh_interval: float = 30.0,
        services: list[str] | None = None,
        tags: list[str] | None = None,
        tag_separator: str = ",",
    ) -> None:
        self.base = f"http://{server}"
        self.on_update = on_update
        self.refresh_interval = refresh_interval
        self.services = services or []
        self.tags = tags or []
        self.tag_separator = tag_separator
        self.datacenter = ""
        self.groups: dict[str, list[dict[str, str]]] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchers: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        # The Go client's HTTP timeout for blocking calls (wait + wait/16 + margin): 135 s.
        self._http = httpx.Client(timeout=135.0)

    # -- the consul/api client's behaviour
    def _get(self, path: str, params: list[tuple[str, str]], query_meta: bool = True) -> tuple[Any, int]:
        params = sorted(params)  # url.Values.Encode sorts keys
        query = "&".join(f"{k}={v}" for k, v in params)
        url = f"{self.base}{path}" + (f"?{query}" if query else "")
        with self._lock:
            self.requests.append(url)
        resp = self._http.get(url)
        if resp.status_code != 200:  # requireOK
            raise QueryError(f"Unexpected response code: {resp.status_code} ({resp.text})")
        index = 0
        if query_meta:  # parseQueryMeta, for catalog/health queries (not agent/self)
            if resp.headers.get("X-Consul-Index", ""):
                index = int(resp.headers["X-Consul-Index"])  # ParseUint: a malformed header is an error
            int(resp.headers["X-Consul-LastContact"])  # required, must parse as uint
        return resp.json(), index

    def _blocking_params(self, last_index: int) -> list[tuple[str, str]]:
        params = [("stale", ""), ("wait", WATCH_TIMEOUT)]
        if last_index:
            params.append(("index", str(last_index)))
        return params

    # -- discovery.Run
    def start(self) -> None:
        t = threading.Thread(target=self._run, name="consul-sd", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for ev in list(self._watchers.values()):
            ev.set()
        self._http.close()  # fails any call in flight, so the threads notice the stop at once
        for t in self._threads:
            t.join(5)

    def _run(self) -> None:
        while not self.datacenter and not self._stop.is_set():
            try:
                info, _ = self._get("/v1/agent/self", [], query_meta=False)
                dc = info["Config"]["Datacenter"]
                if not isinstance(dc, str):
                    raise QueryError("invalid value for datacenter")
                self.datacenter = dc
            except Exception:
                self._stop.wait(RETRY_INTERVAL)
        last_index = 0
        while not self._stop.is_set():
            last_index = self._watch_services(last_index)
            self._stop.wait(self.refresh_interval)

    def _should_watch(self, name: str, tags: list[str]) -> bool:
        if self.services and name not in self.services:
            return False
        return all(t in tags for t in self.tags)

    def _watch_services(self, last_index: int) -> int:
        try:
            services, index = self._get("/v1/catalog/services", self._blocking_params(last_index))
        except Exception:
            if self._stop.is_set():
                return last_index
            self._stop.wait(RETRY_INTERVAL)
            return last_index
        if index == last_index:  # "the watch timed out with no update": discarded
            return last_index
        for name, tags in services.items():
            if not self._should_watch(name, tags) or name in self._watchers:
                continue
            ev = threading.Event()
            self._watchers[name] = ev
            t = threading.Thread(target=self._watch_service, args=(name, ev), daemon=True)
            t.start()
            self._threads.append(t)
        for name in list(self._watchers):
            if name not in services:
                self._watchers.pop(name).set()
                self._publish(name, [])  # clearing target group
        return index

    def _watch_service(self, name: str, stopped: threading.Event) -> None:
        last_index = 0
        while not stopped.is_set() and not self._stop.is_set():
            params = self._blocking_params(last_index) + [("tag", t) for t in self.tags]
            try:
                nodes, index = self._get(f"/v1/health/service/{name}", params)
            except Exception:
                if stopped.is_set() or self._stop.is_set():
                    return
                stopped.wait(RETRY_INTERVAL)
                continue
            if stopped.is_set():
                return
            if index != last_index:
                last_index = index
                self._publish(name, [self._labels(name, n) for n in nodes])
            stopped.wait(self.refresh_interval)

    def _labels(self, name: str, entry: dict[str, Any]) -> dict[str, str]:
        node, svc = entry["Node"], entry["Service"]
        sep = self.tag_separator
        host = svc["Address"] or node["Address"]
        labels = {
            "__address__": join_host_port(host, svc["Port"]),
            "__meta_consul_address": node["Address"],
            "__meta_consul_node": node["Node"],
            "__meta_consul_namespace": svc.get("Namespace", ""),
            "__meta_consul_partition": svc.get("Partition", ""),
            "__meta_consul_tags": sep + sep.join(svc["Tags"] or []) + sep,
            "__meta_consul_service_address": svc["Address"],
            "__meta_consul_service_port": str(svc["Port"]),
            "__meta_consul_service_id": svc["ID"],
            "__meta_consul_health": aggregated_status(entry["Checks"] or []),
            "__meta_consul_service": name,
            "__meta_consul_dc": self.datacenter,
        }
        for k, v in (node.get("Meta") or {}).items():
            labels["__meta_consul_metadata_" + sanitize(k)] = v
        for k, v in (svc.get("Meta") or {}).items():
            labels["__meta_consul_service_metadata_" + sanitize(k)] = v
        for k, v in (node.get("TaggedAddresses") or {}).items():
            labels["__meta_consul_tagged_address_" + sanitize(k)] = v
        return labels

    def _publish(self, source: str, targets: list[dict[str, str]]) -> None:
        if self._stop.is_set():
            return
        with self._lock:  # one writer at a time: the catalog and service watchers run in their own threads
            self.groups[source] = targets
            self.on_update({k: list(v) for k, v in self.groups.items()})


def file_sd_writer(path: Path) -> Callable[[dict[str, list[dict[str, str]]]], None]:
    """Publish target groups as a file_sd JSON file (atomic rename: Prometheus never reads half a file)."""

    def write(groups: dict[str, list[dict[str, str]]]) -> None:
        out = []
        for targets in groups.values():
            for labels in targets:
                rest = {k: v for k, v in labels.items() if k != "__address__"}
                out.append({"targets": [labels["__address__"]], "labels": rest})
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, path)

    return write
