"""Registration: the roster worker keeps this instance registered with Consul or etcd while it serves.

``setup_registration(service)`` wires it from ``STATOR_REGISTRY`` (none | consul | etcd). See
``docs/registration.md``.
"""

from stator.roster.address import advertised_address, detect_address
from stator.roster.consul import ConsulRegistrar
from stator.roster.etcd import EtcdRegistrar
from stator.roster.roster import Instance, Registrar, Roster
from stator.roster.setup import build_registrar, describe_instance, setup_registration

__all__ = [
    "ConsulRegistrar",
    "EtcdRegistrar",
    "Instance",
    "Registrar",
    "Roster",
    "advertised_address",
    "build_registrar",
    "describe_instance",
    "detect_address",
    "setup_registration",
]
