"""``stator demo``: the dev registry, three instances and the front calling them come up and register (passing),
the front balances the demo's traffic over the three, Prometheus scrapes all four with the SLO rules loaded and
Alertmanager active, and SIGTERM stops all of it cleanly, the instances deregistering first. Plus the pieces:
the Prometheus config, the file_sd bridge, the traffic loop, the plan and its port checks."""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

import stator
from stator.demo import _parser, file_sd_targets, make_plan, prometheus_config, taken_ports
from stator.demo_prometheus import ALERTMANAGER_BINARIES, FileSDBridge, Monitoring
from stator.demo_traffic import Traffic, tally_line
from tests.conftest import ServiceProcess
from tests.externals import require_tool
from tests.registry.conftest import RegistryThread

from .conftest import free_port, wait_until


def wait_text(proc: ServiceProcess, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in list(proc.raw):
            line = raw.decode(errors="replace")
            if text in line:
                return line
        if proc.proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = b"".join(proc.raw[-30:]).decode(errors="replace")
    raise AssertionError(f"{text!r} not printed within {timeout}s:\n{tail}\nstderr: {proc.stderr[-2000:]!r}")


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TALLY = re.compile(r"^front → (.*)$")


def optional_tool(*names: str) -> str | None:
    """The first of ``names`` on PATH, else None, except under STATOR_REQUIRE_EXTERNAL=1 where a missing tool
    fails the test (the demo runs without Prometheus or Alertmanager; CI must check it with them)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("STATOR_REQUIRE_EXTERNAL") == "1":
        require_tool(names[0])  # fails
    return None


def tallies(demo: ServiceProcess) -> list[dict[str, int]]:
    """The demo's traffic lines so far (``front → id: n, ...``), parsed."""
    out = []
    for raw in list(demo.raw):
        match = TALLY.match(raw.decode(errors="replace").strip())
        if match:
            out.append({k: int(v) for k, _, v in (part.rpartition(": ") for part in match.group(1).split(", "))})
    return out


def test_demo_runs_registry_instances_and_front_and_stops_on_sigterm(spawn: Any) -> None:
    port = free_port()
    args = ["--registry-port", str(port), "--base-port", "0"]
    prometheus = f"127.0.0.1:{free_port()}" if optional_tool("prometheus") else None
    alertmanager = f"127.0.0.1:{free_port()}" if prometheus and optional_tool(*ALERTMANAGER_BINARIES) else None
    args += ["--prometheus", prometheus] if prometheus else ["--no-prometheus"]
    args += ["--alertmanager", alertmanager] if alertmanager else []
    demo = spawn([sys.executable, "-m", "stator", "demo", *args])
    wait_text(demo, "stator demo ready: 3 of 3 stator instances passing", timeout=60)

    registry = f"http://127.0.0.1:{port}"
    entries = httpx.get(f"{registry}/v1/health/service/stator", params={"passing": ""}, timeout=5).json()
    assert len(entries) == 3
    instances = [(e["Service"]["Address"], e["Service"]["Port"]) for e in entries]
    ids = {e["Service"]["ID"] for e in entries}
    assert len(ids) == 3 and len(set(instances)) == 3
    for address, instance_port in instances:
        assert httpx.get(f"http://{address}:{instance_port}/-/ready", timeout=5).status_code == 200
    assert all(e["Service"]["Tags"] == ["metrics"] for e in entries)
    [front_entry] = httpx.get(f"{registry}/v1/health/service/front", params={"passing": ""}, timeout=5).json()
    front_id = front_entry["Service"]["ID"]
    front = f"http://{front_entry['Service']['Address']}:{front_entry['Service']['Port']}"
    assert front_id.startswith("front-") and front_id not in ids
    # the front forwards to the three (never to itself): right answers, served by a stator instance
    for a, b in ((1, 2), (40, 2), (99, 99)):
        answer = httpx.post(f"{front}/sum", json={"a": a, "b": b}, timeout=5)
        assert answer.status_code == 200 and answer.json() == {"v": a + b}
        assert answer.headers["X-Served-By"] in ids
    # discovery: every instance serves the seeded example document, and a KV update reaches them
    from stator.demo import DISCOVER_KEY
    from stator.discover import EXAMPLE_DOCUMENT

    first = f"http://{instances[0][0]}:{instances[0][1]}"
    wait_until(
        lambda: (
            [s["uri"] for s in httpx.get(f"{first}/-/services", timeout=5).json()["services"]]
            == [s["uri"] for s in EXAMPLE_DOCUMENT]
        ),
        30,
        "the example services document on /-/services",
    )
    update = [{"uri": "http://updated.example/api", "capabilities": [{"name": "resize", "capacity": 1}]}]
    assert httpx.put(f"{registry}/v1/kv/{DISCOVER_KEY}", json=update, timeout=5).json() is True
    for address, instance_port in instances:
        wait_until(
            lambda a=address, p=instance_port: (
                [  # type: ignore[misc]
                    s["uri"] for s in httpx.get(f"http://{a}:{p}/-/services", timeout=5).json()["services"]
                ]
                == ["http://updated.example/api"]
            ),
            10,
            "the updated document on every instance",
        )
    if prometheus:  # Prometheus (via consul_sd, or file_sd fed by the demo) scrapes the three and the front
        wait_until(lambda: set(_prometheus_targets(prometheus)) == ids | {front_id}, 30, "4 Prometheus targets")
        targets = _prometheus_targets(prometheus)
        assert {t["service"] for t in targets.values()} == {"stator", "front"}
        assert {t.get("version") for t in targets.values()} == {stator.__version__}
        # the SLO rules (and the hand-written ones) are loaded: every group of deploy/prometheus/rules
        expected = {
            g["name"] for f in Monitoring.find(DEPLOY).rule_files for g in yaml.safe_load(f.read_text())["groups"]
        }
        assert {"slo:stator:availability", "slo:stator:latency", "slo:front:availability"} <= expected
        wait_until(lambda: _prometheus_rule_groups(prometheus) == expected, 15, f"rule groups {expected}")
    if alertmanager:
        wait_until(
            lambda: _prometheus_alertmanagers(prometheus or "") == [f"http://{alertmanager}/api/v2/alerts"],
            20,
            "Prometheus reporting the demo's Alertmanager as active",
        )
        assert httpx.get(f"http://{alertmanager}/-/ready", timeout=5).status_code == 200
    # the traffic loop: its 5 s tally lines show the front balancing over all three instances
    wait_until(lambda: any(len(t) == 3 for t in tallies(demo)), 15, "a traffic tally over the 3 instances")
    assert all(set(t) <= ids for t in tallies(demo)), tallies(demo)  # no failures, no other instance

    demo.signal()
    assert demo.wait(60) == 0
    assert demo.messages().count("deregistered") == 4  # the instances' log lines share the demo's stdout
    assert any(b"stator demo: stopped" in raw for raw in demo.raw)
    urls = [registry, front, *(f"http://{a}:{p}" for a, p in instances)]
    urls += [f"http://{x}" for x in (prometheus, alertmanager) if x]
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


def _prometheus_api(address: str, path: str, **params: str) -> Any:
    try:
        return httpx.get(f"http://{address}/api/v1/{path}", params=params, timeout=2).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _prometheus_targets(address: str) -> dict[str, dict[str, str]]:
    """instance_id -> labels of Prometheus's active targets."""
    data = _prometheus_api(address, "targets", state="active") or {"activeTargets": []}
    return {t["labels"].get("instance_id", ""): t["labels"] for t in data["activeTargets"]}


def _prometheus_rule_groups(address: str) -> set[str]:
    data = _prometheus_api(address, "rules") or {"groups": []}
    return {g["name"] for g in data["groups"]}


def _prometheus_alertmanagers(address: str) -> list[str]:
    data = _prometheus_api(address, "alertmanagers") or {"activeAlertmanagers": []}
    return [a["url"] for a in data["activeAlertmanagers"]]


def test_file_sd_targets_label_like_consul_sd(registry: RegistryThread) -> None:
    body = {
        "Name": "stator", "ID": "stator-1", "Address": "127.0.0.1", "Port": 8087, "Tags": ["metrics", "blue"],
        "Meta": {"metrics_path": "/metrics"}, "Check": {"TTL": "30s", "Status": "passing"},
    }  # fmt: skip
    httpx.put(f"{registry.url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()
    entries = httpx.get(f"{registry.url}/v1/health/service/stator", timeout=5).json()
    [group] = file_sd_targets(entries)
    assert group["targets"] == ["127.0.0.1:8087"]
    labels = group["labels"]
    assert labels["__meta_consul_service"] == "stator" and labels["__meta_consul_service_id"] == "stator-1"
    assert labels["__meta_consul_tags"] == ",metrics,blue,"
    assert labels["__meta_consul_health"] == "passing"
    assert labels["__meta_consul_service_metadata_metrics_path"] == "/metrics"
    assert labels["__meta_consul_node"] == "test-node" and labels["__meta_consul_dc"] == "dc1"


@pytest.mark.external
@pytest.mark.parametrize("file_sd", [False, True])
def test_demo_prometheus_config_is_valid(tmp_path: Path, file_sd: bool) -> None:
    """promtool accepts the config with the real rule files (it loads and checks them too) and an Alertmanager."""
    promtool = require_tool("promtool")
    sd_file = tmp_path / "targets.json" if file_sd else None
    config = tmp_path / "prometheus.yml"
    rules = Monitoring.find(DEPLOY).rule_files
    assert rules, "deploy/prometheus/rules/*.yml"
    config.write_text(prometheus_config("127.0.0.1:8500", sd_file, rule_files=rules, alertmanager="127.0.0.1:9093"))
    if sd_file is None:
        probe = tmp_path / "probe.yml"
        probe.write_text("scrape_configs:\n  - job_name: p\n    consul_sd_configs:\n      - server: 127.0.0.1:1\n")
        if subprocess.run([promtool, "check", "config", str(probe)], capture_output=True, check=False).returncode:
            pytest.skip("this prometheus build has no consul_sd_configs (Debian's 2.42)")
    else:
        sd_file.write_text("[]")
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rule files found" in result.stdout + result.stderr, result.stdout + result.stderr
    parsed = yaml.safe_load(config.read_text())
    assert parsed["rule_files"] == [str(f) for f in rules]
    assert parsed["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]
    [job] = parsed["scrape_configs"]
    if sd_file is None:  # every service tagged 'metrics', not one service by name: the front is scraped too
        assert job["consul_sd_configs"] == [{"server": "127.0.0.1:8500", "tags": ["metrics"], "refresh_interval": "5s"}]
    relabel = {tuple(r["source_labels"]): r.get("target_label") for r in job["relabel_configs"]}
    assert relabel[("__meta_consul_service_metadata_version",)] == "version"


@pytest.mark.external
def test_demo_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool")
    config = Monitoring.find(DEPLOY).alertmanager_config
    assert config is not None
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_file_sd_bridge_follows_every_service_tagged_metrics(registry: RegistryThread, tmp_path: Path) -> None:
    """What consul_sd's ``tags: [metrics]`` selects: instances of any service with the tag, others left out;
    a registration or deregistration reaches the file."""

    def register(name: str, sid: str, port: int, tags: list[str]) -> None:
        body = {"Name": name, "ID": sid, "Port": port, "Tags": tags, "Check": {"TTL": "60s", "Status": "passing"}}
        httpx.put(f"{registry.url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()

    register("stator", "stator-1", 9001, ["metrics"])
    register("front", "front-1", 9002, ["metrics", "edge"])
    register("db", "db-1", 9003, ["sql"])
    register("stator", "stator-quiet", 9004, [])  # a service with the tag, one instance without it
    path = tmp_path / "targets.json"
    bridge = FileSDBridge(registry.url, path, wait="1s")
    assert orjson.loads(path.read_bytes()) == []  # Prometheus may read the file before the first answer

    def ids() -> set[str]:
        return {g["labels"]["__meta_consul_service_id"] for g in orjson.loads(path.read_bytes())}

    bridge.start()
    try:
        wait_until(lambda: ids() == {"stator-1", "front-1"}, 10, "the tagged instances in the file")
        register("front", "front-2", 9005, ["metrics"])
        wait_until(lambda: ids() == {"stator-1", "front-1", "front-2"}, 10, "a new instance in the file")
        httpx.put(f"{registry.url}/v1/agent/service/deregister/stator-1", timeout=5).raise_for_status()
        wait_until(lambda: ids() == {"front-1", "front-2"}, 10, "a deregistered instance gone from the file")
    finally:
        bridge.stop()
    assert not bridge.is_alive()


class _SumServer(ThreadingHTTPServer):
    """A /sum that answers as the front would, then (``mode``) wrongly or with 503s."""

    mode = "ok"
    served = 0


class _SumHandler(BaseHTTPRequestHandler):
    server: _SumServer

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.served += 1
        mode = self.server.mode
        status, value = (503, {"error": "no instances"}) if mode == "down" else (200, {"v": body["a"] + body["b"]})
        if mode == "wrong":
            value = {"v": -1}
        payload = orjson.dumps(value)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Served-By", f"stator-{self.server.served % 2}")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_traffic_tallies_served_by_and_failures_and_stops_promptly() -> None:
    server = _SumServer(("127.0.0.1", 0), _SumHandler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    lines: list[str] = []
    url = f"http://127.0.0.1:{server.server_address[1]}/sum"
    traffic = Traffic(url, lines.append, period=0.01, report_every=0.3, rng=random.Random(7))
    try:
        traffic.start()
        wait_until(lambda: len(lines) >= 1, 10, "a first tally line")
        assert re.fullmatch(r"front → stator-0: \d+, stator-1: \d+", lines[0]), lines
        server.mode = "wrong"
        wait_until(lambda: any("wrong answer" in line for line in lines), 10, "wrong answers tallied")
        server.mode = "down"
        wait_until(lambda: any(re.search(r"HTTP 503: \d+$", line) for line in lines), 10, "503s tallied")
        traffic.stop()
        assert not traffic.is_alive()
        served = server.served
        time.sleep(0.1)  # ten periods
        assert server.served == served  # nothing sent after stop()
    finally:
        traffic.stop()
        server.shutdown()
        server.server_close()
    assert tally_line("front", Counter({"b": 1, "a": 2}), Counter({"HTTP 503": 3})) == "front → a: 2, b: 1, HTTP 503: 3"
    assert tally_line("front", Counter(), Counter()) == "front → no requests"


def _args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


def test_plan_puts_the_front_after_the_instances_and_checks_every_port() -> None:
    args = _args("--base-port", "18087", "--prometheus", "127.0.0.1:19090", "--alertmanager", "127.0.0.1:19093")
    plan = make_plan(args, "/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager")
    assert [(s.name, s.port, s.counted) for s in plan.instances] == [
        ("instance-1", 18087, True), ("instance-2", 18088, True), ("instance-3", 18089, True), ("front", 18090, False),
    ]  # fmt: skip
    front = plan.front()
    assert front is not None and dict(front.env) == {
        "STATOR_SERVICE_NAME": "front",
        "STATOR_UPSTREAM_SERVICE": "stator",
    }
    assert plan.service_id("stator", front) == f"front-{plan.demo_id}-front"  # not a 'stator' id: never counted
    assert plan.service_id("stator", plan.instances[0]) == f"stator-{plan.demo_id}-instance-1"
    assert [what for _, _, what in plan.ports(args)] == [
        "dev registry (--registry-port)", "instance-1 (--base-port)", "instance-2 (--base-port + 1)",
        "instance-3 (--base-port + 2)", "front (--base-port + 3)", "prometheus (--prometheus)",
        "alertmanager (--alertmanager)",
    ]  # fmt: skip
    # Alertmanager only with Prometheus (nothing else would send it alerts), and only when installed
    assert make_plan(args, None, "/usr/bin/prometheus-alertmanager").alertmanager is None
    assert make_plan(args, "/usr/bin/prometheus", None).alertmanager is None
    assert make_plan(_args("--no-alertmanager"), "p", "a").alertmanager is None
    assert [s.name for s in make_plan(_args("--no-front", "--instances", "1"), None).instances] == ["instance-1"]
    assert {s.port for s in make_plan(_args("--base-port", "0"), None).instances} == {0}


def test_taken_alertmanager_port_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        am = f"127.0.0.1:{taken.getsockname()[1]}"
        args = _args("--registry-port", "0", "--base-port", "0", "--prometheus", f"127.0.0.1:{free_port()}")
        args.alertmanager = am
        [problem] = taken_ports(make_plan(args, "prometheus", "alertmanager"), args)
    assert problem.startswith(f"port {am.rpartition(':')[2]} on 127.0.0.1 for the alertmanager (--alertmanager)")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--service", "front"], "--service front is the front instance's name"),
        (["--alertmanager", "9093"], "--alertmanager must be HOST:PORT"),
        (["--instances", "0"], "--instances must be at least 1"),
    ],
)
def test_demo_refuses_bad_options(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    from stator.demo import main

    assert main(argv) == 2
    assert error in capsys.readouterr().err


# -- issue 13, defect 5: no orphans, no taken ports, only its own instances counted ----------------------------


def _children(pid: int) -> dict[int, str]:
    """pid -> command of the live direct children of ``pid`` (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry.name)] = cmd
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; reaping it is its new parent's business


def _start_demo(spawn: Any, instances: int = 2) -> tuple[ServiceProcess, list[int], dict[int, str]]:
    port = free_port()
    args = ["--registry-port", str(port), "--base-port", "0", "--instances", str(instances)]
    prometheus_port = free_port() if optional_tool("prometheus") else None
    am_port = free_port() if prometheus_port and optional_tool(*ALERTMANAGER_BINARIES) else None
    args += ["--prometheus", f"127.0.0.1:{prometheus_port}"] if prometheus_port else ["--no-prometheus"]
    args += ["--alertmanager", f"127.0.0.1:{am_port}"] if am_port else []
    demo = spawn([sys.executable, "-m", "stator", "demo", *args])
    wait_text(demo, f"stator demo ready: {instances} of {instances} stator instances passing", timeout=60)
    entries = [
        *httpx.get(f"http://127.0.0.1:{port}/v1/health/service/stator", timeout=5).json(),
        *httpx.get(f"http://127.0.0.1:{port}/v1/health/service/front", timeout=5).json(),
    ]
    assert len(entries) == instances + 1
    ports = [port, *(e["Service"]["Port"] for e in entries), *(p for p in (prometheus_port, am_port) if p)]
    children = _children(demo.proc.pid)
    # the registry, the instances, the front, Prometheus and Alertmanager when installed
    assert len(children) == 1 + instances + 1 + (1 if prometheus_port else 0) + (1 if am_port else 0), children
    return demo, ports, children


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_demo_children_die_with_it(spawn: Any, sig: signal.Signals) -> None:
    from stator.ports import port_free

    demo, ports, children = _start_demo(spawn)
    demo.signal(sig)
    # SIGHUP (terminal closed) is an orderly stop; SIGKILL reaches the children as their parent-death SIGTERM.
    wait_until(lambda: not any(_alive(pid) for pid in children), 30, f"children {children} gone")
    wait_until(lambda: all(port_free("127.0.0.1", p) for p in ports), 10, f"ports {ports} free")
    code = demo.wait(10)
    if sig == signal.SIGHUP:
        assert code == 0 and any(b"stator demo: stopped" in raw for raw in demo.raw)
        assert demo.messages().count("deregistered") == 3  # in order: instances first, while the registry runs
    else:
        assert code == -signal.SIGKILL


def test_demo_refuses_taken_ports_naming_the_holder(registry: RegistryThread, spawn: Any) -> None:
    # A stale registry (here: this test process's) on the port, listing three passing "stator" instances.
    for n in range(3):
        body = {"Name": "stator", "ID": f"stale-{n}", "Port": 9000 + n, "Check": {"TTL": "60s", "Status": "passing"}}
        httpx.put(f"{registry.url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        base = taken.getsockname()[1]
        args = ["--registry-port", str(registry.port), "--base-port", str(base), "--no-prometheus", "--no-front"]
        demo = spawn([sys.executable, "-m", "stator", "demo", *args])
        assert demo.wait(30) == 1
    err = demo.stderr.decode()
    me = f"pid {os.getpid()} ("
    assert f"port {registry.port} on 127.0.0.1 for the dev registry (--registry-port) is already in use by {me}" in err
    assert f"port {base} on 127.0.0.1 for the instance-1 (--base-port) is already in use by {me}" in err
    assert "not started" in err and not demo.raw  # nothing started, nothing counted
    assert _children(demo.proc.pid) == {}


def test_only_the_demos_own_instances_are_counted(registry: RegistryThread) -> None:
    from stator.demo import passing_instances

    for sid in ("stale-1", "stale-2", "stator-abc123-instance-1", "stator-abc123-instance-2"):
        body = {"Name": "stator", "ID": sid, "Port": 9000, "Check": {"TTL": "60s", "Status": "passing"}}
        httpx.put(f"{registry.url}/v1/agent/service/register", json=body, timeout=5).raise_for_status()
    ours = {"stator-abc123-instance-1", "stator-abc123-instance-2", "stator-abc123-instance-3"}
    found = passing_instances(registry.url, "stator", ours)
    assert sorted(e["Service"]["ID"] for e in found) == ["stator-abc123-instance-1", "stator-abc123-instance-2"]


def test_workdirs_of_killed_demos_are_removed(tmp_path: Path) -> None:
    from stator.demo import remove_stale_workdirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed, running, foreign = tmp_path / "stator-demo-a", tmp_path / "stator-demo-b", tmp_path / "stator-demo-c"
    for path, pid in ((killed, dead.pid), (running, os.getppid())):
        (path / "prometheus-data").mkdir(parents=True)
        (path / "demo.pid").write_text(str(pid))
    foreign.mkdir()  # no pid file: not a directory this code wrote
    assert remove_stale_workdirs(tmp_path) == [killed]
    assert not killed.exists() and running.exists() and foreign.exists()
