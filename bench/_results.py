"""Writes one benchmark's section into bench/RESULTS.md, replacing that section's previous results only."""

from __future__ import annotations

import datetime
import platform
import re
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def versions(packages: list[str]) -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in packages:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def record_section(title: str, body: str, packages: list[str]) -> None:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}\n\n_{stamp}; {versions(packages)}; {platform.machine()}, {platform.system()}_\n\n{body.strip()}\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in bench/.\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text.rstrip() + "\n")
