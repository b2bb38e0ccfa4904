"""stator: observable, discoverable Python services."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from stator.http.instrument import instrument as instrument
    from stator.service import Service as Service

__all__ = ["Service", "__version__", "instrument"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import stator`` stays cheap for the CLI's -h/-c paths and avoids import cycles.
    if name == "instrument":
        from stator.http.instrument import instrument

        return instrument
    if name == "Service":
        from stator.service import Service

        return Service
    raise AttributeError(name)
