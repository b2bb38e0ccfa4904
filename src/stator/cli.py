"""The ``stator`` command: ``stator run`` serves the reference service; ``stator registry`` the dev registry.

Configuration comes from ``STATOR_*`` environment variables: ``stator run -h`` lists every one of them (generated
from the settings models), ``stator run -c`` prints the loaded configuration with secrets redacted.
A configuration error prints one readable line to stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import orjson

from stator import __version__
from stator.config import ConfigError, format_help, load_settings, redacted_dump
from stator.config.env import unknown_variables

EXIT_CONFIG = 2


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stator run",
        add_help=False,
        description="Serve the stator reference service. Configured by the environment variables below.",
    )
    parser.add_argument("-h", "--help", action="store_true", help="list every setting and exit")
    parser.add_argument("-c", "--config", action="store_true", help="print the loaded config (redacted) and exit")
    return parser


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.help:
        print(
            "usage: stator run [-h] [-c]\n\n"
            "Serve the stator reference service. Every setting is an environment variable:\n"
        )
        print(format_help())
        return 0
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"stator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.config:
        sys.stdout.write(orjson.dumps(redacted_dump(settings), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    from starlette.routing import Route

    from stator.app.reference import create_app
    from stator.discover import ServicesEndpoint, setup_discovery
    from stator.roster import setup_registration
    from stator.service import Service

    services = ServicesEndpoint()  # GET /services; the watcher is attached once the Service exists
    service = Service(settings, app=create_app(extra_routes=[Route("/services", services)]))
    setup_registration(service)  # STATOR_REGISTRY=consul|etcd: the roster worker (docs/registration.md)
    services.attach(setup_discovery(service))  # STATOR_DISCOVER_SOURCE=consul|etcd|file (docs/discovery.md)
    for name in unknown_variables(os.environ):
        service.logger.warning("unknown setting ignored", variable=name)
    return service.run()


def cmd_registry(argv: Sequence[str]) -> int:
    from stator.registry.cli import main as registry_main

    code: int = registry_main(list(argv))
    return code


def cmd_demo(argv: Sequence[str]) -> int:
    from stator.demo import main as demo_main

    return demo_main(list(argv))


COMMANDS = {
    "run": (cmd_run, "serve the reference service (stator run -h lists every setting)"),
    "registry": (cmd_registry, "run the Consul-compatible dev registry (stator registry -h)"),
    "demo": (cmd_demo, "dev registry + three registered instances (+ Prometheus if installed) (stator demo -h)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(f"usage: stator <command> [options]   (stator {__version__})\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return 0 if args else EXIT_CONFIG
    if args[0] in ("-V", "--version"):
        print(__version__)
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"stator: unknown command {args[0]!r} (try: {', '.join(COMMANDS)})", file=sys.stderr)
        return EXIT_CONFIG
    return command[0](args[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
