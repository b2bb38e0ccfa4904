"""``promtool test rules`` unit tests for the generated SLO rules, built from the same SLO document.

For every SLO and every burn-rate window (1h/5m, 6h/30m, 1d/2h, 3d/6h) the tests feed synthetic traffic - 1000
requests a minute, healthy for a baseline, then a constant share of bad events - and state which
``ErrorBudgetBurn`` alerts are firing:

* a *fast burn* (a few times the window's factor) fires that alert within its long window, and nothing fires
  before the burn starts;
* a burn *under* the window's factor never fires that alert (the slower windows may, which the test states too);
* a burn under the budget itself (half the sustainable rate) fires nothing, checked at the end of every window,
  and leaves half the error budget, which a ``promql_expr_test`` checks on the recorded series.

Which alerts fire is computed from the SRE-workbook arithmetic (the error ratio over a window is the bad share
times the part of the window after the burn started); a scenario is only used when every window's ratio is at
least 25% away from its threshold, so the 5m-rate smoothing of the recorded series can never decide a result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stator.slo.model import AvailabilitySLI, LatencySLI, ServiceLevelObjective, SLODocument, format_le
from stator.slo.rules import (
    ALERT_NAME,
    BURN_WINDOWS,
    BurnWindow,
    alert_annotations,
    alert_labels,
    burn_factor,
    dump_yaml,
)

__all__ = ["build_unit_tests", "render_unit_tests"]

REQUESTS_PER_MINUTE = Decimal(1000)
# Rules are evaluated every 15m and samples are 2m30s apart: still two samples in every 5m rate window (under
# Prometheus 2's closed and 3's left-open ranges alike), and several times faster than 1m steps over days.
EVALUATION_INTERVAL = "15m"
SAMPLE_INTERVAL = "2m30s"
SAMPLE_SECONDS = 150
MARGIN = Decimal("0.25")
FAST_MULTIPLES = (Decimal(2), Decimal(3), Decimal("2.5"), Decimal(4), Decimal("1.6"))
SLOW_MULTIPLES = (Decimal("0.6"), Decimal("0.7"), Decimal("0.5"), Decimal("0.75"))
CHECK_AT = (Decimal("0.5"), Decimal("0.6"), Decimal("0.75"), Decimal("0.9"), Decimal(1))


@dataclass(frozen=True)
class Scenario:
    """Healthy traffic for ``baseline`` minutes, then ``bad_share`` of the events bad until ``end`` minutes."""

    baseline: int
    bad_share: Decimal
    end: int


def _minutes(seconds: int) -> int:
    return seconds // 60


def _ratio(scenario: Scenario, at: int, window_minutes: int) -> Decimal:
    """The error ratio over ``window_minutes`` at minute ``at`` (data exists from minute 0)."""
    burning = min(max(at - scenario.baseline, 0), window_minutes)
    covered = min(at, window_minutes)
    return scenario.bad_share * burning / covered if covered else Decimal(0)


def _firing(slo: ServiceLevelObjective, scenario: Scenario, at: int) -> tuple[list[BurnWindow], bool]:
    """(windows whose alert fires at minute ``at``, whether every window is clear of its threshold by MARGIN)."""
    firing, clear = [], True
    for window in BURN_WINDOWS:
        threshold = burn_factor(slo, window) * slo.budget
        above = []
        for seconds in (window.long_seconds, window.short_seconds):
            ratio = _ratio(scenario, at, _minutes(seconds))
            if abs(ratio - threshold) < MARGIN * threshold:
                clear = False
            above.append(ratio > threshold)
        if all(above):
            firing.append(window)
    return firing, clear


def _aligned(minutes: Decimal) -> int:
    """Minutes rounded up to a multiple of the evaluation interval (15m), where rules were just evaluated."""
    return int(-(-minutes // 15) * 15)


def _fast(slo: ServiceLevelObjective, window: BurnWindow) -> tuple[Scenario, int, list[BurnWindow]]:
    long = _minutes(window.long_seconds)
    for baseline in (_aligned(Decimal(long) / 2), long):
        for multiple in FAST_MULTIPLES:
            for at_share in CHECK_AT:
                at = baseline + _aligned(long * at_share)
                scenario = Scenario(baseline, multiple * burn_factor(slo, window) * slo.budget, at)
                if scenario.bad_share > 1:
                    continue
                firing, clear = _firing(slo, scenario, at)
                if clear and window in firing:
                    return scenario, at, firing
    raise ValueError(f"no clear fast-burn scenario for {slo.service}/{slo.name} {window.long}")  # pragma: no cover


def _slow(slo: ServiceLevelObjective, window: BurnWindow) -> tuple[Scenario, int, list[BurnWindow]]:
    long = _minutes(window.long_seconds)
    for baseline in (_aligned(Decimal(long) / 2), long):
        for multiple in SLOW_MULTIPLES:
            at = baseline + long
            scenario = Scenario(baseline, multiple * burn_factor(slo, window) * slo.budget, at)
            firing, clear = _firing(slo, scenario, at)
            if clear and window not in firing:
                return scenario, at, firing
    raise ValueError(f"no clear slow-burn scenario for {slo.service}/{slo.name} {window.long}")  # pragma: no cover


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _counter(per_minute_before: Decimal, per_minute_after: Decimal, switch: int, end: int) -> str:
    """promtool series notation: a counter growing by ``before``/min up to minute ``switch``, then by ``after``
    up to minute ``end``, one sample every SAMPLE_INTERVAL."""
    step = Decimal(SAMPLE_SECONDS) / 60
    before, after = per_minute_before * step, per_minute_after * step
    switch_steps, end_steps = int(switch / step), int(end / step)
    first = f"0+{_num(before)}x{switch_steps}"
    if end_steps <= switch_steps:
        return first
    start = before * switch_steps + after
    return f"{first} {_num(start)}+{_num(after)}x{end_steps - switch_steps - 1}"


def _first_match(pattern: str, candidates: tuple[str, ...]) -> str:
    for status in candidates:
        if re.fullmatch(pattern, status):
            return status
    raise ValueError(f"error_status {pattern!r} matches none of {candidates}")


def _labels(values: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in values.items()) + "}"


def _series(slo: ServiceLevelObjective, scenario: Scenario) -> list[dict[str, str]]:
    route = (
        slo.routes[0]
        if slo.routes
        else next(r for r in ("/hello", "/items/{item_id}", "/x") if r not in slo.exclude_routes)
    )
    method = slo.methods[0] if slo.methods else "GET"
    base = {"service": slo.service, "instance_id": f"{slo.service}-test", "method": method, "route": route}
    rate = REQUESTS_PER_MINUTE
    bad = rate * scenario.bad_share
    end, switch = scenario.end, scenario.baseline
    if isinstance(slo.sli, AvailabilitySLI):
        ok = _first_match(
            r"[1-5]\d\d", tuple(s for s in ("200", "201", "204", "404") if not re.fullmatch(slo.sli.error_status, s))
        )
        err = _first_match(slo.sli.error_status, ("500", "503", "502", "504", "429", "499", "404", "400"))
        return [
            {
                "series": "http_requests_total" + _labels({**base, "status": ok}),
                "values": _counter(rate, rate - bad, switch, end),
            },
            {
                "series": "http_requests_total" + _labels({**base, "status": err}),
                "values": _counter(Decimal(0), bad, switch, end),
            },
        ]
    if isinstance(slo.sli, LatencySLI):
        le = format_le(slo.sli.threshold)
        return [
            {"series": "http_request_duration_seconds_count" + _labels(base), "values": _counter(rate, rate, end, end)},
            {
                "series": "http_request_duration_seconds_bucket" + _labels({**base, "le": le}),
                "values": _counter(rate, rate - bad, switch, end),
            },
        ]
    raise TypeError(f"unknown SLI {slo.sli!r}")  # pragma: no cover


def _expected(slo: ServiceLevelObjective, windows: list[BurnWindow]) -> list[dict[str, Any]]:
    return [{"exp_labels": alert_labels(slo, w), "exp_annotations": alert_annotations(slo, w)} for w in windows]


def _alert_test(slo: ServiceLevelObjective, at: int, windows: list[BurnWindow]) -> dict[str, Any]:
    return {"eval_time": f"{at}m", "alertname": ALERT_NAME, "exp_alerts": _expected(slo, windows)}


def _tests_for(slo: ServiceLevelObjective) -> Iterator[dict[str, Any]]:
    ident = f'service="{slo.service}",slo="{slo.name}"'
    for window in BURN_WINDOWS:
        scenario, at, firing = _fast(slo, window)
        yield {
            "name": f"{slo.service}/{slo.name}: fast burn fires {window.long}/{window.short} within {window.long}",
            "interval": SAMPLE_INTERVAL,
            "input_series": _series(slo, scenario),
            "alert_rule_test": [
                _alert_test(slo, scenario.baseline - 5, []),  # healthy so far: nothing fires
                _alert_test(slo, at, firing),
            ],
        }
        scenario, at, firing = _slow(slo, window)
        yield {
            "name": f"{slo.service}/{slo.name}: burn under {_num(burn_factor(slo, window))}x never fires"
            f" {window.long}/{window.short}",
            "interval": SAMPLE_INTERVAL,
            "input_series": _series(slo, scenario),
            "alert_rule_test": [_alert_test(slo, at, firing)],
        }
    # Half the sustainable rate from the start: nothing ever fires, and half the budget is left.
    longest = max(_minutes(w.long_seconds) for w in BURN_WINDOWS)
    quiet = Scenario(0, slo.budget / 2, longest + 60)
    checks = sorted({_minutes(w.long_seconds) for w in BURN_WINDOWS} | {quiet.end})
    yield {
        "name": f"{slo.service}/{slo.name}: burning half the budget rate never alerts",
        "interval": SAMPLE_INTERVAL,
        "input_series": _series(slo, quiet),
        "alert_rule_test": [_alert_test(slo, at, []) for at in checks],
        "promql_expr_test": [
            {
                "expr": f"round(slo:period_error_budget_remaining:ratio{{{ident}}}, 0.01)",
                "eval_time": f"{quiet.end}m",
                "exp_samples": [{"labels": f"{{{ident}}}", "value": 0.5}],
            },
            {
                "expr": f"round(slo:current_burn_rate:ratio{{{ident}}}, 0.01)",
                "eval_time": f"{quiet.end}m",
                "exp_samples": [{"labels": f"{{{ident}}}", "value": 0.5}],
            },
        ],
    }


def build_unit_tests(doc: SLODocument, rule_file: str) -> dict[str, Any]:
    """The promtool test file as data; ``rule_file`` is relative to the test file's directory."""
    return {
        "rule_files": [rule_file],
        "evaluation_interval": EVALUATION_INTERVAL,
        "tests": [test for slo in doc.slos for test in _tests_for(slo)],
    }


def render_unit_tests(doc: SLODocument, rule_file: str, source: str) -> str:
    header = (
        f"# Generated by `stator slo generate` from {source}: do not edit, regenerate.\n"
        "# Run: promtool test rules <this file>. What the scenarios are: src/stator/slo/promtest.py.\n"
    )
    return dump_yaml(build_unit_tests(doc, rule_file), header)
