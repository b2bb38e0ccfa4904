"""The generated SLO rules: committed and fresh, accepted by promtool, and proven by promtool unit tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stator.slo import load_document
from stator.slo.promtest import build_unit_tests
from stator.slo.rules import dump_yaml, render_rules
from tests.deploy.conftest import DEPLOY, ROOT, RULES_DIR, TESTS_DIR, load_yaml, promtool

SLO_FILE = DEPLOY / "slo.yaml"
UNIT_TESTS = TESTS_DIR / "slo.test.yml"


def stator(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stator", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_generated_files_are_not_stale() -> None:
    result = stator("slo", "generate", "--check")
    assert result.returncode == 0, f"{result.stderr}\nrun: stator slo generate"


def test_check_reports_stale_and_generate_fixes(tmp_path: Path) -> None:
    (tmp_path / "slo.yaml").write_text(SLO_FILE.read_text())
    out = tmp_path / "prom"
    missing = stator("slo", "generate", "-f", "slo.yaml", "-o", "prom", "--check", cwd=tmp_path)
    assert missing.returncode == 1 and "is stale" in missing.stderr
    assert stator("slo", "generate", "-f", "slo.yaml", "-o", "prom", cwd=tmp_path).returncode == 0
    assert stator("slo", "generate", "-f", "slo.yaml", "-o", "prom", "--check", cwd=tmp_path).returncode == 0
    rules = out / "rules" / "slo.yml"
    rules.write_text(rules.read_text().replace("14.4", "14"))
    edited = stator("slo", "generate", "-f", "slo.yaml", "-o", "prom", "--check", cwd=tmp_path)
    assert edited.returncode == 1 and str(Path("prom") / "rules" / "slo.yml") in edited.stderr
    # Same document, same bytes as the committed files (paths in the headers are as given on the command line).
    assert (out / "tests" / "slo.test.yml").read_text().replace("from slo.yaml", "from deploy/slo.yaml") == (
        UNIT_TESTS.read_text()
    )


def test_invalid_document_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "slo.yaml").write_text("version: 1\nslos:\n  - {service: a, name: b, objective: 120, sli: {type: x}}\n")
    result = stator("slo", "generate", "-f", "slo.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert "slos[0].objective" in result.stderr and "slos[0].sli" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    assert stator("slo", "validate", "-f", str(SLO_FILE)).returncode == 0


@pytest.mark.parametrize("path", sorted(RULES_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_slo_has_rules_and_four_burn_alerts() -> None:
    doc = load_document(SLO_FILE)
    groups = {g["name"]: g["rules"] for g in load_yaml(RULES_DIR / "slo.yml")["groups"]}
    for slo in doc.slos:
        rules = groups[f"slo:{slo.service}:{slo.name}"]
        alerts = [r for r in rules if "alert" in r]
        assert [(a["labels"]["severity"], a["labels"]["long_window"], a["labels"]["short_window"]) for a in alerts] == [
            ("page", "1h", "5m"),
            ("page", "6h", "30m"),
            ("ticket", "1d", "2h"),
            ("ticket", "3d", "6h"),
        ]
        for rule in rules:  # every series is attributable to its SLO
            assert rule["labels"]["service"] == slo.service and rule["labels"]["slo"] == slo.name


def _unit_test_cases() -> list[dict[str, Any]]:
    return list(load_yaml(UNIT_TESTS)["tests"])


def _run_unit_tests(tmp_path: Path, slo: str, tests: list[dict[str, Any]], rules_text: str | None = None) -> str:
    """Run ``tests`` (promtool test cases of ``slo``) against that SLO's rule group of the committed rules (or of
    ``rules_text``); returns promtool's output. The other groups would only add evaluations of empty series."""
    groups = yaml.safe_load(rules_text if rules_text is not None else (RULES_DIR / "slo.yml").read_text())["groups"]
    service, name = slo.split("/")
    mine = [g for g in groups if g["name"] == f"slo:{service}:{name}"]
    assert len(mine) == 1
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": mine}, sort_keys=False))
    data = load_yaml(UNIT_TESTS)
    data.update(rule_files=[rules.name], tests=tests)
    (tmp_path / "t.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = promtool("test", "rules", "t.yml", cwd=tmp_path, timeout=300)
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def test_unit_test_file_covers_every_slo_and_window() -> None:
    names = [t["name"] for t in _unit_test_cases()]
    for slo in load_document(SLO_FILE).slos:
        mine = [n for n in names if n.startswith(f"{slo.service}/{slo.name}:")]
        assert len(mine) == 9, mine  # fast + under for 4 windows, and the quiet burn
    assert load_yaml(UNIT_TESTS)["rule_files"] == ["../rules/slo.yml"]


# The committed unit tests, one SLO per test so pytest-xdist spreads them over the workers.
@pytest.mark.parametrize(
    "slo", [f"{s.service}/{s.name}" for s in load_document(SLO_FILE).slos], ids=lambda s: s.replace("/", "-")
)
def test_promtool_unit_tests_pass(slo: str, tmp_path: Path) -> None:
    cases = [t for t in _unit_test_cases() if t["name"].startswith(f"{slo}:")]
    output = _run_unit_tests(tmp_path, slo, cases)
    assert output.startswith("rc=0") and "SUCCESS" in output, output


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests can fail: a page threshold ten times too high makes the fast-burn test fail."""
    doc = load_document(SLO_FILE)
    broken = render_rules(doc, "x").replace("> (14.4 * 0.001)", "> (144 * 0.001)")
    assert broken != render_rules(doc, "x")
    fast_1h = [t for t in _unit_test_cases() if t["name"] == "stator/availability: fast burn fires 1h/5m within 1h"]
    output = _run_unit_tests(tmp_path, "stator/availability", fast_1h, broken)
    assert output.startswith("rc=1") and "FAILED" in output, output
    assert "alertname: ErrorBudgetBurn" in output


def test_generation_is_deterministic() -> None:
    doc = load_document(SLO_FILE)
    assert render_rules(doc, "a") == render_rules(doc, "a")
    assert dump_yaml(build_unit_tests(doc, "r"), "") == dump_yaml(build_unit_tests(doc, "r"), "")


def test_operational_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", "stator.test.yml", cwd=TESTS_DIR)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
