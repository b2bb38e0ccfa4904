"""``stator registry``: the dev registry's command line.

Run it as ``stator registry`` (once dispatched by the main CLI) or ``python -m stator.registry.cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import socket
import string
import sys
from pathlib import Path
from typing import cast

from stator.logs import Logger, stdlib
from stator.logs.logger import Format, Level
from stator.registry.checks import split_host_port
from stator.registry.server import bind, build_server, create_app

DEFAULT_LISTEN = "127.0.0.1:8500"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stator registry",
        description=(
            "A Consul-HTTP-API-compatible registry in one process, for one machine (demo, development, CI). "
            "Production uses Consul."
        ),
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})")
    p.add_argument("--data-dir", type=Path, default=None, help="keep KV and registrations here across restarts")
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=os.environ.get("STATOR_LOG_LEVEL", "info"),
        help="lowest level written (default: $STATOR_LOG_LEVEL or info)",
    )
    p.add_argument(
        "--log-format",
        choices=["json", "logfmt", "console"],
        default=os.environ.get("STATOR_LOG_FORMAT", "json"),
        help="log line format (default: $STATOR_LOG_FORMAT or json)",
    )
    p.add_argument(
        "--dev-session-ttl-multiplier",
        type=float,
        default=2.0,
        metavar="X",
        help="a session expires TTL x X after its last renewal (Consul: 2). Lower it only in tests, to see "
        "expiry and lock hand-over fast with Consul's 10 s minimum TTL",
    )
    p.add_argument("--node", default=socket.gethostname(), help="node name (default: the host name)")
    p.add_argument("--datacenter", default="dc1", help="datacenter name (default dc1)")
    p.add_argument(
        "--advertise",
        default="",
        help="node address in the catalog (default: the listen host if it is an IP, else 127.0.0.1)",
    )
    return p


def _run_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(7))


def _advertise(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    return "127.0.0.1" if ip.is_unspecified else host


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already wrote to stderr
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    listen = args.listen if not args.listen.startswith(":") else "0.0.0.0" + args.listen
    hp = split_host_port(listen)
    if hp is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"stator registry: --listen {args.listen!r}: expected HOST:PORT\n")
        return 2
    host, port = hp
    logger = Logger(
        app_id="stator-registry", run_id=_run_id(), level=cast(Level, args.log_level), fmt=cast(Format, args.log_format)
    )
    uninstall = stdlib.install(logger, args.log_level)
    try:
        try:
            sock = bind(host, port)
        except OSError as exc:
            logger.error("cannot listen", exc=exc, listen=args.listen)
            return 1
        bound = sock.getsockname()
        address = f"[{bound[0]}]:{bound[1]}" if sock.family == socket.AF_INET6 else f"{bound[0]}:{bound[1]}"
        app = create_app(
            logger,
            data_dir=args.data_dir,
            node_name=args.node,
            datacenter=args.datacenter,
            node_address=args.advertise or _advertise(host),
            session_ttl_multiplier=args.dev_session_ttl_multiplier,
        )
        server = build_server(app)
        logger.info(
            "listening",
            address=address,
            port=bound[1],
            data_dir=str(args.data_dir) if args.data_dir else None,
            node=args.node,
            datacenter=args.datacenter,
            note="dev registry: one machine (demo, development, CI); production uses Consul",
        )

        # SIGTERM/SIGINT start a graceful shutdown (parked queries answered, snapshot written): exit 0.
        try:
            _run(server.serve([sock], handle_signals=True))
        except Exception:  # startup failed (already logged)
            return 1
        finally:
            sock.close()
        if not server.started:
            return 1
        logger.info("registry stopped")
        return 0
    finally:
        uninstall()


def _run(coro: object) -> None:
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
