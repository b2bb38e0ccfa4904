"""SLOs as data (``deploy/slo.yaml``) and the Prometheus rules generated from them (``stator slo generate``).

See docs/slo.md: the document's fields, the recorded series, the burn-rate alerts and a worked example.
"""

from __future__ import annotations

from stator.slo.model import (
    AvailabilitySLI,
    LatencySLI,
    ServiceLevelObjective,
    SLODocument,
    SLOError,
    load_document,
    parse_document,
)
from stator.slo.promtest import build_unit_tests, render_unit_tests
from stator.slo.rules import BURN_WINDOWS, build_rule_groups, burn_factor, render_rules

__all__ = [
    "BURN_WINDOWS",
    "AvailabilitySLI",
    "LatencySLI",
    "SLODocument",
    "SLOError",
    "ServiceLevelObjective",
    "build_rule_groups",
    "build_unit_tests",
    "burn_factor",
    "load_document",
    "parse_document",
    "render_rules",
    "render_unit_tests",
]
