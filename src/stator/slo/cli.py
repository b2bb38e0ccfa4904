"""``stator slo``: validate the SLO document and write (or check) the generated Prometheus rules and their tests.

    stator slo generate [-f deploy/slo.yaml] [-o deploy/prometheus] [--check]

writes ``<out>/rules/slo.yml`` (recording rules and alerts) and ``<out>/tests/slo.test.yml`` (promtool unit
tests). ``--check`` writes nothing and exits 1 when a file is missing or differs from what would be generated
(stale), which CI uses. An invalid document prints every problem with its field path and exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stator.slo.model import SLOError, load_document
from stator.slo.promtest import render_unit_tests
from stator.slo.rules import render_rules

EXIT_STALE = 1
EXIT_INVALID = 2
RULES = Path("rules") / "slo.yml"
TESTS = Path("tests") / "slo.test.yml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stator slo", description="SLOs as data -> Prometheus rules (docs/slo.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the recording rules, burn-rate alerts and their promtool tests")
    gen.add_argument("-f", "--file", type=Path, default=Path("deploy/slo.yaml"), help="SLO document")
    gen.add_argument("-o", "--out", type=Path, default=Path("deploy/prometheus"), help="output directory")
    gen.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files are stale")
    sub.add_parser("validate", help="only validate the SLO document").add_argument(
        "-f", "--file", type=Path, default=Path("deploy/slo.yaml"), help="SLO document"
    )
    return parser


def outputs(file: Path, out: Path) -> dict[Path, str]:
    """What ``generate`` writes: path -> content. Paths in the headers are as given, for stable output."""
    doc = load_document(file)
    source = file.as_posix()
    rule_ref = Path(os.path.relpath(out / RULES, (out / TESTS).parent)).as_posix()
    return {
        out / RULES: render_rules(doc, source),
        out / TESTS: render_unit_tests(doc, rule_ref, source),
    }


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # never a half-written rule file for a Prometheus that reloads it


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_INVALID
    try:
        if args.command == "validate":
            doc = load_document(args.file)
            print(f"{args.file}: {len(doc.slos)} SLOs, valid")
            return 0
        files = outputs(args.file, args.out)
    except SLOError as exc:
        print(f"stator slo: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.check:
        stale = [p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        for path in stale:
            print(
                f"stator slo: {path} is stale: run `stator slo generate -f {args.file} -o {args.out}`", file=sys.stderr
            )
        return EXIT_STALE if stale else 0
    for path, text in files.items():
        _write(path, text)
        print(f"wrote {path}")
    return 0
