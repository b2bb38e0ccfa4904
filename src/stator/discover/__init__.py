"""Discovery: follow a services document in Consul KV, etcd or a local file; serve it at ``/services``.

See ``docs/discovery.md``. The pieces: a :class:`Poller` per source, the :class:`Discover` worker publishing
immutable :class:`Snapshot` values, :class:`ServicesEndpoint` for ``GET /services``, and
:func:`setup_discovery` wiring it all onto a Service from ``STATOR_DISCOVER_*`` settings.
"""

from stator.discover.consul import ConsulKVPoller
from stator.discover.etcd import EtcdPoller
from stator.discover.file import FilePoller
from stator.discover.http import ServicesEndpoint
from stator.discover.limiter import TokenBucket
from stator.discover.model import (
    EXAMPLE_DOCUMENT,
    Capability,
    InvalidDocument,
    ServiceEntry,
    decode_services,
    encode_services,
)
from stator.discover.poller import POLL_REASONS, Poller, PollError, PollResult
from stator.discover.setup import build_poller, setup_discovery
from stator.discover.worker import Discover, Snapshot

__all__ = [
    "EXAMPLE_DOCUMENT",
    "POLL_REASONS",
    "Capability",
    "ConsulKVPoller",
    "Discover",
    "EtcdPoller",
    "FilePoller",
    "InvalidDocument",
    "PollError",
    "PollResult",
    "Poller",
    "ServiceEntry",
    "ServicesEndpoint",
    "Snapshot",
    "TokenBucket",
    "build_poller",
    "decode_services",
    "encode_services",
    "setup_discovery",
]
