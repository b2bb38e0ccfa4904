"""Configuration from the environment: typed groups, Go-style durations, redaction, generated help."""

from stator.config.env import ConfigError, describe_settings, format_help, load_settings, redacted_dump
from stator.config.settings import Settings

__all__ = ["ConfigError", "Settings", "describe_settings", "format_help", "load_settings", "redacted_dump"]
