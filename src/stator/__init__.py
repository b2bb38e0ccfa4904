"""stator: observable, discoverable Python services."""

__version__ = "0.1.0"
