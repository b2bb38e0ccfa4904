"""Just enough PromQL lexing to list the metric names an expression selects (for the dashboard tests)."""

from __future__ import annotations

import re

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan", "atan2", "start", "end",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_BRACES = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Names of the series ``expr`` selects: identifiers that are not functions, keywords or label names."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS or re.fullmatch(r"\d.*", name):
            continue
        names.add(name)
    return names


def substitute(expr: str, rate_interval: str = "1m", all_value: str = ".*", service: str = ".*") -> str:
    """A Grafana query with its variables replaced the way Grafana would for "All" selections."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__interval", rate_interval)
        .replace("$__range", "1h")
        .replace("$service", service)
        .replace("$instance", all_value)
        .replace("$route", all_value)
    )
