"""The Grafana dashboards: well-formed, every query parses, every metric they use is exposed by a live
`stator run` (so renaming a metric fails here), and with a real Prometheus scraping real instances under traffic,
every query returns data.

The live part uses Debian's Prometheus scraping two `stator run` instances every second (static targets relabelled
to the labels consul_sd produces), the committed rule files plus one extra SLO that the traffic deliberately
burns (so ALERTS has data), and a request loop; bounded to ~30 s rather than the demo's minute.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stator.slo import parse_document, render_rules
from tests.conftest import ServiceProcess, service_env
from tests.deploy.conftest import DASHBOARDS, RULES_DIR, load_yaml, promtool
from tests.deploy.promql import metric_names, substitute
from tests.externals import require_tool
from tests.processes import free_port
from tests.prometheus import Prometheus
from tests.registry.conftest import RegistryThread

PROMETHEUS_ONLY = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# An SLO the test traffic burns on purpose: every /sleep request is slower than 50 ms.
BURNING_SLO = """
version: 1
slos:
  - service: stator
    name: burning
    objective: 99
    window: 30d
    sli: {type: latency, threshold: 0.05}
    routes: ["/sleep"]
"""


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARDS}


def targets() -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard, panel title, target) for every query of every panel."""
    out = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((name, panel["title"], target))
    return out


def variable_queries() -> list[str]:
    out = []
    for board in dashboards().values():
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                out.append(var["query"]["query"])
    return out


def recorded_names() -> set[str]:
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in load_yaml(path)["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def test_dashboards_are_well_formed() -> None:
    boards = dashboards()
    assert set(boards) == {"stator-overview.json", "stator-runtime.json", "stator-registry-discovery.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), name
        variables = {v["name"] for v in board["templating"]["list"]}
        assert {"datasource", "service", "instance"} <= variables, name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "${datasource}", (name, panel["title"])
                assert 'service=~"$service"' in target["expr"], (name, panel["title"])
    # Exemplars on the latency panel, with a trace backend to link them to.
    exemplar = [t for _, title, t in targets() if t.get("exemplar")]
    assert exemplar and all("http_request_duration_seconds_bucket" in t["expr"] for t in exemplar)
    datasources = load_yaml(DASHBOARDS[0].parents[1] / "provisioning" / "datasources" / "datasources.yaml")
    prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    (link,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert link["name"] == "trace_id"
    assert link["datasourceUid"] in {d["uid"] for d in datasources["datasources"] if d["type"] in ("jaeger", "tempo")}


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (variables substituted as Grafana does) as a recording rule expression."""
    rules = [{"record": f"dashboard:query:{i}", "expr": substitute(t["expr"])} for i, (_, _, t) in enumerate(targets())]
    for i, query in enumerate(variable_queries()):
        inner = query[len("label_values(") : -1].rsplit(",", 1)[0]
        rules.append({"record": f"dashboard:variable:{i}", "expr": substitute(inner)})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_parse_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x", "expr": "sum by (a (b)"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{service=~"a"}[1m])))'
        ' / on (service, slo) group_left slo:error_budget:ratio{x="y"} or vector(0) and up offset 5m'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "slo:error_budget:ratio", "up"}


# ---------------------------------------------------------------------------------------------------------------
# The live part: two instances with registration, discovery and tracing on, scraped by a real Prometheus.


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.registry = RegistryThread().start()
        httpx.put(
            f"{self.registry.url}/v1/kv/stator/services",
            content=b'[{"uri": "http://127.0.0.1:1", "capabilities": [{"name": "sum", "capacity": 1}]}]',
            timeout=5,
        ).raise_for_status()
        dead_otlp = f"http://127.0.0.1:{free_port()}/v1/traces"  # exports fail and are counted; exemplars stay
        self.instances = [
            ServiceProcess(
                [__import__("sys").executable, "-m", "stator", "run"],
                service_env(
                    STATOR_SERVICE_NAME="stator",
                    STATOR_SERVICE_ID=f"stator-{i}",
                    STATOR_REGISTRY="consul",
                    STATOR_CONSUL_ADDR=self.registry.url,
                    STATOR_SERVICE_ADDRESS="127.0.0.1",
                    STATOR_ROSTER_CHECK_INTERVAL="1s",
                    STATOR_DISCOVER_SOURCE="consul",
                    STATOR_DISCOVER_KEY="stator/services",
                    STATOR_OTLP_ENDPOINT=dead_otlp,
                    STATOR_OTLP_BATCH_DELAY="200ms",
                ),
            )
            for i in (1, 2)
        ]
        self.workdir = workdir
        self.prometheus: Prometheus | None = None
        self.stopping = threading.Event()
        self.traffic = threading.Thread(target=self._traffic, daemon=True)
        try:
            self.urls = [p.base_url for p in self.instances]
        except BaseException:
            self.stop()  # never leave the instances or the registry running
            raise

    def start_prometheus(self) -> Prometheus:
        rules = self.workdir / "rules"
        rules.mkdir()
        for path in RULES_DIR.glob("*.yml"):
            (rules / path.name).write_text(path.read_text())
        (rules / "burning.yml").write_text(render_rules(parse_document(BURNING_SLO), "test"))
        targets = [
            {"targets": [url.split("//", 1)[1]], "labels": {"service": "stator", "instance_id": f"stator-{i}"}}
            for i, url in zip((1, 2), self.urls, strict=True)
        ]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules / "*.yml")],
            "scrape_configs": [{"job_name": "stator", "static_configs": targets}],
        }
        self.prometheus = Prometheus(
            require_tool("prometheus"),
            yaml.safe_dump(config),
            self.workdir / "prom",
            ["--enable-feature=exemplar-storage"],
        )
        self.prometheus.wait_ready()
        return self.prometheus

    def _traffic(self) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not self.stopping.is_set() and n < 20_000:  # bounded in count and time
                base = self.urls[n % len(self.urls)]
                n += 1
                try:
                    client.get(f"{base}/hello")
                    client.get(f"{base}/items/{n}")
                    client.post(f"{base}/sum", json={"a": n, "b": 1})
                    client.post(f"{base}/concat", json={"a": "x", "b": "y"})
                    client.post(f"{base}/sum", content=b"{not json")  # a 400
                    client.get(f"{base}/no-such-route")  # a 404 on <unmatched>
                    if n % 3 == 0:
                        client.get(f"{base}/sleep", params={"seconds": "0.06"})
                except httpx.HTTPError:
                    pass
                self.stopping.wait(0.02)

    def metrics_text(self) -> str:
        return httpx.get(f"{self.urls[0]}/metrics", timeout=5).text

    def stop(self) -> None:
        self.stopping.set()
        if self.traffic.is_alive():
            self.traffic.join(10)
        if self.prometheus is not None:
            self.prometheus.stop()
        for proc in self.instances:
            proc.stop()
        self.registry.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_tool("prometheus")
    stack = Stack(tmp_path_factory.mktemp("stack"))
    try:
        for proc in stack.instances:
            proc.wait_for("registered", timeout=20)
        stack.traffic.start()
        yield stack
    finally:
        stack.stop()


def exposed_names(text: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_dashboard_metric_is_exposed_by_stator(stack: Stack) -> None:
    # HTTP series appear with the first requests, discovery series with the first poll: wait for both.
    deadline = time.monotonic() + 15
    exposed = exposed_names(stack.metrics_text())
    while time.monotonic() < deadline and not {"stator_discovery_services", "http_requests_total"} <= exposed:
        time.sleep(0.2)
        exposed = exposed_names(stack.metrics_text())
    known = exposed | recorded_names() | PROMETHEUS_ONLY
    used: dict[str, set[str]] = {}
    for name, title, target in targets():
        for metric in metric_names(substitute(target["expr"])):
            used.setdefault(metric, set()).add(f"{name}: {title}")
    for query in variable_queries():
        for metric in metric_names(query[len("label_values(") : -1].rsplit(",", 1)[0]):
            used.setdefault(metric, set()).add("variable")
    for path in RULES_DIR.glob("*.yml"):  # the rules read raw metrics too
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                for metric in metric_names(rule["expr"]):
                    used.setdefault(metric, set()).add(f"{path.name}: {rule.get('record') or rule.get('alert')}")
    unknown = {m: sorted(w) for m, w in used.items() if m not in known}
    assert not unknown, f"metrics used but not exposed by `stator run`: {unknown}"
    assert len(used) >= 35


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    prom = stack.start_prometheus()
    queries = {
        f"{name}: {title} [{target['refId']}]": substitute(target["expr"], rate_interval="5s", service="stator")
        for name, title, target in targets()
    }
    empty: dict[str, str] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        empty = {}
        for key, expr in queries.items():
            result = prom.get("/api/v1/query", query=expr)["result"]
            if not result:
                empty[key] = expr
        if not empty:
            break
        time.sleep(1)
    assert not empty, "queries without data:\n" + "\n".join(f"{k}\n    {v}" for k, v in empty.items())

    # The variables' label_values queries list the instances, and the burning SLO pages.
    services = prom.get("/api/v1/label/service/values", **{"match[]": "http_requests_total"})
    assert services == ["stator"]
    alerts = prom.get("/api/v1/query", query='ALERTS{alertname="ErrorBudgetBurn", slo="burning", alertstate="firing"}')
    assert {a["metric"]["severity"] for a in alerts["result"]} == {"page", "ticket"}
    # Latency exemplars carry trace ids for Grafana's link to the trace backend.
    now = time.time()
    exemplar_expr = next(
        substitute(t["expr"], rate_interval="5s", service="stator") for _, _, t in targets() if t.get("exemplar")
    )
    found = prom.get("/api/v1/query_exemplars", query=exemplar_expr, start=str(now - 120), end=str(now))
    labels = [e["labels"] for series in found for e in series["exemplars"]]
    assert labels and all(len(lbl["trace_id"]) == 32 for lbl in labels)
