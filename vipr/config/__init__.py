"""Provider configuration: one YAML file → frozen dataclasses.

`load_config(path)` reads the YAML node tree (so every value keeps its line), checks every
key and value, and raises `ConfigError` listing all the problems it found, each one line
"FILE:LINE: key.path: what was expected (got …)". The keys are documented by the example
config/provider-a.yaml. Durations become float seconds, addresses `HostPort`, relative
paths absolute paths (resolved against the config file's directory).

values: addresses, names, durations; schema: the section dataclasses; yaml_reader: YAML
nodes → checked values with FILE:LINE errors; load: the sections read and cross-checked.
"""

from vipr.config.load import load_config
from vipr.config.schema import (
    HookInterface,
    Interface,
    Interfaces,
    LoggingSection,
    OverlaySection,
    ProviderConfig,
    ProviderSection,
    ProxySection,
    PvpSection,
    RedirectInterface,
    RetentionSection,
    TicketsSection,
    TlsFiles,
)
from vipr.config.values import HostPort, format_duration, parse_duration, valid_domain
from vipr.config.yaml_reader import ConfigError

__all__ = [
    "ConfigError",
    "HookInterface",
    "HostPort",
    "Interface",
    "Interfaces",
    "LoggingSection",
    "OverlaySection",
    "ProviderConfig",
    "ProviderSection",
    "ProxySection",
    "PvpSection",
    "RedirectInterface",
    "RetentionSection",
    "TicketsSection",
    "TlsFiles",
    "load_config",
    "format_duration",
    "parse_duration",
    "valid_domain",
]
