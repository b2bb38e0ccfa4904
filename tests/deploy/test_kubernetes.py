"""deploy/kubernetes: valid against the Kubernetes schemas offline, and consistent with stator's own settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stator.config import load_settings
from stator.config.durations import parse_duration
from stator.config.env import unknown_variables
from stator.config.settings import MetricsSettings
from stator.http.ops import HEALTHY, READY
from tests.deploy.conftest import DEPLOY, ROOT, load_yaml

K8S = DEPLOY / "kubernetes"
CORE = ["deployment.yaml", "service.yaml", "pdb.yaml"]
PENDING_SETTINGS = {"STATOR_SHUTDOWN_DELAY"}  # the lame-duck delay (issue 13): wired here ahead of it


def manifests() -> dict[str, dict[str, Any]]:
    return {p.name: load_yaml(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"}


@pytest.mark.parametrize("version", ["1.31.0", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("name", CORE)
def test_manifest_validates_strictly(name: str, version: str) -> None:
    kubernetes_validate.validate(load_yaml(K8S / name), version, strict=True)  # raises on any problem


def test_validation_can_fail() -> None:
    bad = load_yaml(K8S / "deployment.yaml")
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(manifests())


def _container() -> dict[str, Any]:
    return dict(manifests()["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0])


def _env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container()["env"] if "value" in e}


def test_env_is_valid_stator_configuration() -> None:
    env = _env()
    settings = load_settings(env)
    assert set(unknown_variables(env)) <= PENDING_SETTINGS, unknown_variables(env)
    assert settings.roster.registry == "none"  # the Service does discovery in Kubernetes
    ids = [e for e in _container()["env"] if e["name"] == "STATOR_SERVICE_ID"]
    assert ids[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_probes_ports_and_paths_agree_with_stator() -> None:
    container = _container()
    settings = load_settings(_env())
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http.port}
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTHY, "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": HEALTHY, "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": READY, "port": "http"}
    # The probe must not give up before stator's own readiness check timeout would.
    assert container["readinessProbe"]["timeoutSeconds"] >= settings.ops.ready_timeout
    # Liveness must tolerate stator's own 5 s "loop stalled" verdict plus a probe in flight.
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > 5


def test_grace_period_covers_lame_duck_and_drain() -> None:
    spec = manifests()["deployment.yaml"]["spec"]["template"]["spec"]
    container = _container()
    env = _env()
    settings = load_settings(env)
    delay = parse_duration(env["STATOR_SHUTDOWN_DELAY"])
    timeout = settings.shutdown.timeout
    assert timeout == parse_duration(env["STATOR_SHUTDOWN_TIMEOUT"])
    if "delay" in type(settings.shutdown).model_fields:  # once the lame-duck setting exists, it must agree
        assert getattr(settings.shutdown, "delay") == delay  # noqa: B009
    pre_stop = 0.0
    if "lifecycle" in container:  # a preStop sleep would add to the shutdown; stator's own delay replaces it
        pre_stop = float(container["lifecycle"]["preStop"]["sleep"]["seconds"])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + delay + timeout + 5
    # The lame duck outlasts the readiness probe's detection time (for load balancers that probe themselves).
    ready = container["readinessProbe"]
    assert delay >= ready["periodSeconds"] * ready["failureThreshold"]
    assert delay >= 3  # endpoints propagation to kube-proxy and ingresses takes seconds
    # The comment block at the top of deployment.yaml states these numbers; keep it honest.
    text = (K8S / "deployment.yaml").read_text()
    assert f"0-{delay:g}s" in text and f"{spec['terminationGracePeriodSeconds']}s" in text


def test_non_root_and_image_user_agree() -> None:
    pod = manifests()["deployment.yaml"]["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user is not None
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == tuple(map(int, user.groups()))
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    # A read-only root needs a writable /tmp, and disk metrics should watch it.
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_selectors_match_the_pods() -> None:
    all_ = manifests()
    pod_labels = all_["deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    selectors = [
        all_["deployment.yaml"]["spec"]["selector"]["matchLabels"],
        all_["service.yaml"]["spec"]["selector"],
        all_["pdb.yaml"]["spec"]["selector"]["matchLabels"],
        all_["podmonitor.yaml"]["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items(), selector
    assert all_["service.yaml"]["spec"]["ports"][0]["targetPort"] == "http"
    assert all_["pdb.yaml"]["spec"]["maxUnavailable"] < all_["deployment.yaml"]["spec"]["replicas"]


def test_podmonitor_matches_stator_and_the_dashboards() -> None:
    """No Kubernetes schema covers the Prometheus Operator's CRD, so its fields are checked here: the port name
    exists, the path is stator's metrics path, and the relabelling produces the labels the dashboards and the
    SLO rules select on (as consul_sd relabelling does in deploy/prometheus/prometheus.yml)."""
    monitor = manifests()["podmonitor.yaml"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
    assert endpoint["port"] in {p["name"] for p in _container()["ports"]}
    assert endpoint["path"] == MetricsSettings().path
    targets = {r["targetLabel"] for r in endpoint["relabelings"]}
    assert targets == {"service", "instance_id", "version"}
    for relabel in endpoint["relabelings"]:
        assert set(relabel) <= {"sourceLabels", "targetLabel", "regex", "replacement", "action"}
        if "regex" in relabel:
            re.compile(relabel["regex"])
    version = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "version")
    image = _container()["image"]
    assert re.fullmatch(version["regex"], image).group(1) == image.rsplit(":", 1)[1]  # type: ignore[union-attr]


def test_every_manifest_parses_as_single_documents() -> None:
    for path in K8S.glob("*.yaml"):
        docs = list(yaml.safe_load_all(Path(path).read_text()))
        assert len(docs) == 1, path
