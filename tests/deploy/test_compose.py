"""deploy/compose.yaml and what it mounts, checked without Docker (none on the development machines or in CI).

How the compose file is validated, and why this way: the issue suggests `docker-compose config` from the Python
``docker-compose`` package, which validates without a daemon. Its last release (1.29.2, 2021) requires
``PyYAML<6`` and ``jsonschema<4``; PyYAML 5 has no wheel for Python 3.11 and does not build with current
Cython, and ``jsonschema<4`` conflicts with ``kubernetes-validate`` (which needs ``jsonschema>=4.18``), so it
cannot be installed beside our dev dependencies. What `docker-compose config` does is: load YAML (with merge keys),
interpolate ``${VAR:-default}``, validate against the Compose JSON schema, then check references (depends_on,
volumes, build context). This test does the same steps with the *same schema file* that package ships -
``compose/config/compose_spec.json`` from the docker-compose 1.29.2 wheel on PyPI (Apache-2.0), copied unchanged
to ``tests/deploy/compose_spec.json`` - and the reference checks below. Passing the 2021 schema also means the
file uses no key newer than Compose v1.29, so both ``docker-compose`` v1 and ``docker compose`` v2 accept it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stator.config import load_settings
from stator.config.env import unknown_variables
from tests.deploy.conftest import DEPLOY, ROOT, load_yaml, promtool
from tests.externals import require_tool

COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = Path(__file__).with_name("compose_spec.json")
VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
# Settings that another part of stator adds (issues 13 and 14); the compose file already wires them.
PENDING_SETTINGS = {"STATOR_SHUTDOWN_DELAY", "STATOR_UPSTREAM_SERVICE"}


def interpolate(value: Any, missing: list[str]) -> Any:
    """Compose interpolation: ``$$`` is a literal ``$``; ``${VAR:-default}`` with VAR unset is the default;
    a variable without a default is recorded in ``missing`` (``docker compose`` would warn and use "")."""
    if isinstance(value, dict):
        return {k: interpolate(v, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, missing) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(3)
        if match.group(2) is None:
            missing.append(name)
            return ""
        return match.group(2)

    return VARIABLE.sub(sub, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    missing: list[str] = []
    data = interpolate(load_yaml(COMPOSE), missing)
    assert not missing, f"variables without a default: {missing}"
    return dict(data)


def test_compose_validates_against_the_compose_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the draft docker-compose 1.29 validates with
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_can_fail(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    bad = json.loads(json.dumps(compose))
    bad["services"]["prometheus"]["healthcheck"]["intervall"] = "5s"
    bad["services"]["grafana"]["ports"] = "3000"
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert len(errors) == 2


def test_references_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name}: named volume {source} is not declared"
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / svc["build"]["dockerfile"]).is_file()
    # The consul-seed one-shot is the only one allowed to finish.
    completed = {
        dep
        for svc in services.values()
        for dep, cond in (svc.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert completed == {"consul-seed"}


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    mounts = 0
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                mounts += 1
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    assert mounts >= 7


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for base in re.findall(r"^FROM\s+(\S+)", dockerfile, re.M):
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base


def test_stator_services_are_configured_validly(compose: dict[str, Any]) -> None:
    stators = {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("stator:")}
    assert set(stators) == {"stator-1", "stator-2", "stator-3", "front"}
    addresses = set()
    for name, svc in stators.items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        settings = load_settings(env)  # raises on any invalid value
        assert set(unknown_variables(env)) <= PENDING_SETTINGS, unknown_variables(env)
        assert settings.roster.registry == "consul" and "metrics" in settings.service.tags
        assert env["STATOR_SERVICE_ADDRESS"] == svc["hostname"] == name
        addresses.add(env["STATOR_SERVICE_ADDRESS"])
        assert settings.discover.source == "consul" and settings.discover.key == "stator/services"
        grace = svc["stop_grace_period"]
        assert int(grace.rstrip("s")) >= 2 * 5 + settings.shutdown.timeout  # 2x delay + timeout
    assert stators["front"]["environment"]["STATOR_UPSTREAM_SERVICE"] == "stator"
    assert stators["front"]["environment"]["STATOR_SERVICE_NAME"] == "front"
    assert len(addresses) == 4


def test_seeded_services_document_is_valid() -> None:
    from stator.discover.model import decode_services

    services = decode_services((DEPLOY / "consul" / "services.json").read_bytes())
    assert len(services) == 3


def _without_consul_sd(config: dict[str, Any]) -> dict[str, Any]:
    """The compose Prometheus config with consul_sd_configs swapped for an equivalent static target list."""
    for job in config["scrape_configs"]:
        if job.pop("consul_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["stator-1:8087"]}]
    return config


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool check config, except consul_sd_configs: Debian's Prometheus 2.42 is built without Consul service
    discovery, so that one block is replaced by a static target (the rest - relabelling, rule files, alerting - is
    checked as written). Where promtool has consul_sd, the file is also checked unchanged."""
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stator")
    assert job["consul_sd_configs"][0]["tags"] == ["metrics"]
    labels = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"service", "instance_id", "version", "__metrics_path__", "__address__"} <= labels
    rules = tmp_path / "rules"
    rules.mkdir()
    for rule_file in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        (rules / rule_file.name).write_text(rule_file.read_text())
    config["rule_files"] = [str(rules / "*.yml")]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(_without_consul_sd(config)))
    result = promtool("check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout

    full = tmp_path / "full.yml"
    full.write_text((DEPLOY / "prometheus" / "prometheus.yml").read_text().replace("/etc/prometheus/rules", str(rules)))
    unchanged = promtool("check", "config", str(full))
    if "consul_sd_configs" in unchanged.stdout + unchanged.stderr and unchanged.returncode != 0:
        assert "field consul_sd_configs not found" in unchanged.stdout + unchanged.stderr  # Debian's build
    else:
        assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr


def test_alertmanager_config_passes_amtool() -> None:
    amtool = require_tool("amtool")
    import subprocess

    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # Pages and tickets reach different receivers; a page inhibits the tickets of the same SLO.
    for labels, receiver in (("severity=page", "pager"), ("severity=ticket", "tickets")):
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={config}", "alertname=ErrorBudgetBurn", labels],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr
