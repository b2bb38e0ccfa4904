"""The ``stator`` command: ``stator run`` serves the reference service; ``stator registry`` the dev registry.

Configuration comes from ``STATOR_*`` environment variables: ``stator run -h`` lists every one of them (generated
from the settings models), ``stator run -c`` prints the loaded configuration with secrets redacted.
A configuration error prints one readable line to stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import orjson

from stator import __version__
from stator.asgi import AnyASGIApp
from stator.config import ConfigError, Settings, format_help, load_settings, redacted_dump

EXIT_CONFIG = 2

if TYPE_CHECKING:
    from stator.service import Service


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stator run",
        add_help=False,
        description="Serve an ASGI app (default: the stator reference service). Configured by the environment"
        " variables below.",
    )
    parser.add_argument("-h", "--help", action="store_true", help="list every setting and exit")
    parser.add_argument("-c", "--config", action="store_true", help="print the loaded config (redacted) and exit")
    parser.add_argument("app", nargs="?", help="module:attribute of an ASGI app (instrumented or not)")
    parser.add_argument(
        "-w", "--workers", type=int, default=None, help="worker processes sharing the port (default STATOR_WORKERS)"
    )
    return parser


def load_app(spec: str) -> object:
    """The object ``module:attribute`` names (the module imported with the working directory on sys.path,
    as uvicorn does). Raises ValueError with a readable reason."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"app must be given as module:attribute, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{spec} is not an ASGI app (not callable)")
    return obj


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    if args.help:
        print(
            "usage: stator run [-h] [-c] [-w N] [module:app]\n\n"
            "Serve an ASGI app, or the stator reference service when none is given, with ordered shutdown.\n"
            "Every setting is an environment variable:\n"
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

    workers = args.workers if args.workers is not None else settings.workers.count
    if workers < 1:
        print("stator: --workers must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if args.app:
        try:  # fail fast, in the parent, on a bad module:app (workers import it again after the fork)
            if workers == 1:
                load_app(args.app)
            else:
                _check_module(args.app)
        except ValueError as exc:
            print(f"stator: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if workers == 1:
        return build_service(settings, args.app).run()
    return _run_workers(settings, args.app, workers)


def build_service(settings: Settings, spec: str | None, slot_hint: int | None = None) -> Service:
    """The Service `stator run` serves: the app ``spec`` names (its own Service when it was instrumented at
    import), or the reference service."""
    from stator.http.instrument import Instrumented
    from stator.service import Service

    if spec:
        app = load_app(spec)
        if isinstance(app, Instrumented):
            return app.service
        return Service(settings, app=cast(AnyASGIApp, app), slot_hint=slot_hint, from_env=True)

    from stator.app.reference import Wiring, create_app
    from stator.remotewrite import setup_remote_write

    if "STATOR_WAVE_ENABLED" not in os.environ:  # the demo sine is on by default for the reference service only
        settings = settings.model_copy(update={"wave": settings.wave.model_copy(update={"enabled": True})})
    wiring = Wiring()
    reference = create_app(wiring=wiring)
    # The reference service is called "stator" unless STATOR_SERVICE_NAME says otherwise: no "no name" warning.
    service = Service(settings, app=reference, name=settings.service.name, slot_hint=slot_hint, from_env=True)
    wiring.instance_id = service.instance_id  # X-Served-By on every answer
    if settings.upstream.service:  # STATOR_UPSTREAM_SERVICE: /sum and /concat forwarded to that service
        wiring.upstream = service.upstream(settings.upstream.service)
    # STATOR_REMOTE_WRITE=true: the seed's observable remote-write backend (/api/v1/write, series, query).
    reference.router.routes.extend(setup_remote_write(service))
    return service


def _check_module(spec: str) -> None:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"app must be given as module:attribute, got {spec!r}")
    if importlib.util.find_spec(module_name) is None:
        raise ValueError(f"cannot import {module_name!r}: no such module")


def _run_workers(settings: Settings, spec: str | None, workers: int) -> int:
    """``stator run --workers N``: bind once, fork N supervised workers that join one group (docs/workers.md).
    Nothing here may start a thread or an event loop before the fork."""
    from stator.ids import short_id
    from stator.logs import Logger
    from stator.workers import Listeners, Supervisor, bind

    http = settings.http
    try:
        http_sock = bind(http.host, http.port)
        ops_sock = bind(http.host, settings.ops.port) if settings.ops.port is not None else None
    except OSError as exc:
        print(f"stator: cannot bind {http.host}:{http.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    log = Logger(app_id=settings.service.name, run_id=short_id(), level=settings.log.level, fmt=settings.log.format)
    host, port = http_sock.getsockname()[:2]
    log.info("listening", address=f"{host}:{port}", workers=workers)

    def run_child(listeners: Listeners, slot: int) -> int:
        service = build_service(settings, spec, slot_hint=slot)
        return service.run(sock=listeners.http, ops_sock=listeners.ops)

    supervisor = Supervisor(
        run_child,
        Listeners(http_sock, ops_sock),
        workers=workers,
        logger=log,
        shutdown_timeout=settings.shutdown.timeout,
    )
    return supervisor.run()


def cmd_registry(argv: Sequence[str]) -> int:
    from stator.registry.cli import main as registry_main

    code: int = registry_main(list(argv))
    return code


def cmd_demo(argv: Sequence[str]) -> int:
    from stator.demo import main as demo_main

    return demo_main(list(argv))


def cmd_slo(argv: Sequence[str]) -> int:
    from stator.slo.cli import main as slo_main

    return slo_main(list(argv))


COMMANDS = {
    "run": (cmd_run, "serve the reference service (stator run -h lists every setting)"),
    "registry": (cmd_registry, "run the Consul-compatible dev registry (stator registry -h)"),
    "demo": (cmd_demo, "dev registry + three registered instances (+ Prometheus if installed) (stator demo -h)"),
    "slo": (cmd_slo, "SLOs as data -> Prometheus recording rules and burn-rate alerts (stator slo -h)"),
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
