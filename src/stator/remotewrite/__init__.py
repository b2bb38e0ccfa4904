"""A Prometheus remote-write 1.0 receiver that keeps the latest sample of each series and answers for them in
Prometheus's HTTP API shape; fully instrumented (metrics, a span per write, rate-limited logs)."""

from stator.remotewrite.api import Receiver, prom_float
from stator.remotewrite.setup import ReceiverHost, build_receiver, receiver_routes, setup_remote_write

__all__ = ["Receiver", "ReceiverHost", "build_receiver", "prom_float", "receiver_routes", "setup_remote_write"]
