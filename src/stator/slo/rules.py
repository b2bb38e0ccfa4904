"""Prometheus rules from an SLO document: SLI recording rules and multi-window multi-burn-rate alerts.

Per SLO, one rule group (so each evaluation sees the series recorded just before it):

* ``slo:sli_total:rate5m`` and ``slo:sli_error:rate5m``: valid and bad events per second over 5m, from the raw
  metrics. These are the only rules that read raw series; every longer window is derived from them.
* ``slo:sli_error:ratio_rate<w>`` for w in 5m, 30m, 1h, 2h, 6h, 1d, 3d: the error ratio over the window, as
  ``sum_over_time(bad[w]) / sum_over_time(total[w])`` of the 5m rates - traffic-weighted (a quiet hour counts less
  than a busy one, unlike an average of ratios) and cheap (a handful of series per SLO instead of every raw
  series over three days).
* ``slo:period_error:ratio``, ``slo:period_burn_rate:ratio``, ``slo:period_error_budget_remaining:ratio``: the same
  over the SLO's whole window; ``slo:current_burn_rate:ratio`` (over 1h); ``slo:objective:ratio`` and
  ``slo:error_budget:ratio`` as constants for dashboards.
* ``ErrorBudgetBurn`` alerts, as in the Google SRE workbook (and Sloth): page when 2% of the budget burns in 1h or
  5% in 6h, ticket when 10% burns in 1d or 3d, each also requiring the short window (1/12 of the long) so an alert
  stops soon after the burn does. The burn-rate factor is ``budget share * period / long window`` (14.4, 6, 3 and 1
  for 30 days).

Every series carries ``service`` and ``slo`` labels; the alerts add ``severity``, ``long_window``, ``short_window``,
``burn_rate`` and the SLO's own ``labels``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stator.slo.model import (
    AvailabilitySLI,
    LatencySLI,
    ServiceLevelObjective,
    SLODocument,
    format_le,
    parse_prometheus_duration,
)

__all__ = [
    "ALERT_NAME",
    "BURN_WINDOWS",
    "RATE_WINDOWS",
    "BurnWindow",
    "alert_annotations",
    "alert_labels",
    "build_rule_groups",
    "burn_factor",
    "dump_yaml",
    "render_rules",
    "selector",
]

ALERT_NAME = "ErrorBudgetBurn"
RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


@dataclass(frozen=True)
class BurnWindow:
    """One alert: ``budget_share`` of the error budget spent within ``long`` (and still burning over ``short``)."""

    severity: str
    long: str
    short: str
    budget_share: Decimal

    @property
    def long_seconds(self) -> int:
        return parse_prometheus_duration(self.long)

    @property
    def short_seconds(self) -> int:
        return parse_prometheus_duration(self.short)


BURN_WINDOWS = (
    BurnWindow("page", "1h", "5m", Decimal("0.02")),
    BurnWindow("page", "6h", "30m", Decimal("0.05")),
    BurnWindow("ticket", "1d", "2h", Decimal("0.10")),
    BurnWindow("ticket", "3d", "6h", Decimal("0.10")),
)


def _num(value: Decimal) -> str:
    """A Decimal as the shortest exact PromQL/YAML number: 14.4, 0.001, 1."""
    text = format(value.normalize(), "f")
    return text


def burn_factor(slo: ServiceLevelObjective, window: BurnWindow) -> Decimal:
    """How many times faster than sustainable the budget burns when ``window.budget_share`` goes in ``window.long``."""
    return window.budget_share * slo.window_seconds / window.long_seconds


def _string(value: str) -> str:
    return json.dumps(value)  # a PromQL double-quoted string: the same escapes for this character set


_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _literal_regex(value: str) -> str:
    """``value`` as an RE2 pattern matching itself: only RE2's metacharacters are escaped."""
    return _RE2_SPECIAL.sub(r"\\\1", value)


def _alternatives(values: list[str]) -> str:
    return _string("|".join(_literal_regex(v) for v in values))


def selector(slo: ServiceLevelObjective, *extra: str) -> str:
    """The label matchers of the SLO's raw series: service, routes, methods, plus ``extra``."""
    matchers = [f"service={_string(slo.service)}"]
    if slo.routes:
        matchers.append(f"route=~{_alternatives(slo.routes)}")
    if slo.exclude_routes:
        matchers.append(f"route!~{_alternatives(slo.exclude_routes)}")
    if slo.methods:
        matchers.append(f"method=~{_alternatives(slo.methods)}")
    matchers.extend(extra)
    return "{" + ",".join(matchers) + "}"


def _slo_selector(slo: ServiceLevelObjective) -> str:
    return "{" + f"service={_string(slo.service)},slo={_string(slo.name)}" + "}"


def _event_rates(slo: ServiceLevelObjective) -> tuple[str, str]:
    """PromQL for (valid events/s, bad events/s) over 5m, both ``by (service)``; bad is 0, not absent, when none."""
    if isinstance(slo.sli, AvailabilitySLI):
        total = f"sum by (service) (rate(http_requests_total{selector(slo)}[5m]))"
        errors = f"http_requests_total{selector(slo, f'status=~{_string(slo.sli.error_status)}')}"
        # No error series at all is a ratio of 0, not "no data": the 'or' fills it in from the total.
        bad = f"sum by (service) (rate({errors}[5m]))\nor\n0 * {total}"
        return total, bad
    if isinstance(slo.sli, LatencySLI):
        total = f"sum by (service) (rate(http_request_duration_seconds_count{selector(slo)}[5m]))"
        le = f"le={_string(format_le(slo.sli.threshold))}"
        good = f"sum by (service) (rate(http_request_duration_seconds_bucket{selector(slo, le)}[5m]))"
        return total, f"{total}\n-\n{good}"
    raise TypeError(f"unknown SLI {slo.sli!r}")  # pragma: no cover - the model admits only the two above


def _duration_words(seconds: Decimal) -> str:
    seconds = Decimal(int(seconds))
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes and not days else ""]
    return "".join(parts) or "under a minute"


def alert_labels(slo: ServiceLevelObjective, window: BurnWindow) -> dict[str, str]:
    return {
        "severity": window.severity,
        "service": slo.service,
        "slo": slo.name,
        "long_window": window.long,
        "short_window": window.short,
        "burn_rate": _num(burn_factor(slo, window)),
        **slo.labels,
    }


def alert_annotations(slo: ServiceLevelObjective, window: BurnWindow) -> dict[str, str]:
    factor = burn_factor(slo, window)
    share = _num(window.budget_share * 100)
    exhaustion = _duration_words(slo.window_seconds / factor)
    return {
        "summary": f"{slo.service} {slo.name}: error budget burning {_num(factor)}x too fast",
        "description": (
            f"SLO {slo.name} of {slo.service} ({_num(slo.objective)}% over {slo.window}) has spent at least"
            f" {share}% of its error budget in the last {window.long}, and is still burning over the last"
            f" {window.short}. At this rate the whole {slo.window} budget lasts {exhaustion}."
        ),
    }


def _group(slo: ServiceLevelObjective) -> dict[str, Any]:
    sel = _slo_selector(slo)
    ident = {"service": slo.service, "slo": slo.name}
    total, bad = _event_rates(slo)
    budget = _num(slo.budget)
    rules: list[dict[str, Any]] = [
        {"record": "slo:objective:ratio", "expr": f"vector({_num(slo.ratio)})", "labels": dict(ident)},
        {"record": "slo:error_budget:ratio", "expr": f"vector({budget})", "labels": dict(ident)},
        {"record": "slo:sli_total:rate5m", "expr": total, "labels": dict(ident)},
        {"record": "slo:sli_error:rate5m", "expr": bad, "labels": dict(ident)},
        {
            "record": "slo:sli_error:ratio_rate5m",
            "expr": f"slo:sli_error:rate5m{sel}\n/\nslo:sli_total:rate5m{sel}",
            "labels": dict(ident),
        },
    ]
    for rate_window in RATE_WINDOWS[1:]:
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{rate_window}",
                "expr": f"sum_over_time(slo:sli_error:rate5m{sel}[{rate_window}])\n/\n"
                f"sum_over_time(slo:sli_total:rate5m{sel}[{rate_window}])",
                "labels": dict(ident),
            }
        )
    period = slo.window
    rules += [
        {
            "record": "slo:period_error:ratio",
            "expr": f"sum_over_time(slo:sli_error:rate5m{sel}[{period}])\n/\n"
            f"sum_over_time(slo:sli_total:rate5m{sel}[{period}])",
            "labels": dict(ident),
        },
        {
            "record": "slo:period_burn_rate:ratio",
            "expr": f"slo:period_error:ratio{sel} / {budget}",
            "labels": dict(ident),
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:period_burn_rate:ratio{sel}",
            "labels": dict(ident),
        },
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate1h{sel} / {budget}",
            "labels": dict(ident),
        },
    ]
    for window in BURN_WINDOWS:
        threshold = f"({_num(burn_factor(slo, window))} * {budget})"
        rules.append(
            {
                "alert": ALERT_NAME,
                "expr": f"slo:sli_error:ratio_rate{window.long}{sel} > {threshold}\nand\n"
                f"slo:sli_error:ratio_rate{window.short}{sel} > {threshold}",
                "labels": alert_labels(slo, window),
                "annotations": alert_annotations(slo, window),
            }
        )
    return {"name": f"slo:{slo.service}:{slo.name}", "rules": rules}


def build_rule_groups(doc: SLODocument) -> dict[str, Any]:
    """The rule file as data (``{"groups": [...]}``), one group per SLO in document order."""
    return {"groups": [_group(slo) for slo in doc.slos]}


def dump_yaml(data: Any, header: str) -> str:
    """Deterministic YAML: keys in insertion order, multi-line strings as literal blocks, ``header`` on top."""
    from stator.slo.model import _yaml

    yaml = _yaml()

    dumper: Any = type("Dumper", (yaml.SafeDumper,), {})

    def represent_str(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    dumper.add_representer(str, represent_str)
    body: str = yaml.dump(data, Dumper=dumper, sort_keys=False, width=120, default_flow_style=False)
    return header + body


def render_rules(doc: SLODocument, source: str) -> str:
    header = (
        f"# Generated by `stator slo generate` from {source}: do not edit, regenerate.\n"
        "# SLI recording rules and multi-window multi-burn-rate alerts (docs/slo.md).\n"
    )
    return dump_yaml(build_rule_groups(doc), header)
