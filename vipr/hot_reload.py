"""SIGHUP: re-read the provider config; what can change live is applied, the rest is kept.

`fixed_changes(old, new, role)` names the keys that differ but cannot change while the role
runs (listen addresses and transports, limits of open listeners, database, runtime_dir, the
overlay's node identity and document); `keep_fixed` returns the new config with those keys
set back to the running values. The role's reloader then applies the result (numbers,
certificates for new TLS connections, ticket settings, timers). `reload_config` runs it
all: a config that does not load is logged and the running one kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vipr.config import ConfigError, ProviderConfig, load_config
from vipr.logsetup import printable

__all__ = ["FIXED_KEYS", "FixedChange", "Reloader", "fixed_changes", "keep_fixed",
           "reload_config"]

log = logging.getLogger("vipr.reload_config")

Reloader = Callable[[ProviderConfig], Awaitable[None]]

_COMMON = ("runtime_dir", "database", "provider.name", "provider.vservice")
_IFACES = ("internal", "pstn", "federation")
# Per role: the keys its open sockets, store or identity were made from.
FIXED_KEYS: dict[str, tuple[str, ...]] = {
    "overlay": (*_COMMON, "overlay.configuration", "overlay.cert", "overlay.key",
                "overlay.listen", "overlay.create", "overlay.nodes", "overlay.numbers_per_node",
                "overlay.limits", "overlay.metrics.listen", "overlay.debug", "pvp.listen"),
    "pvp": (*_COMMON, "overlay.configuration", "overlay.cert", "overlay.key",
            "pvp.listen", "pvp.limits", "pvp.metrics.listen"),
    "proxy": (*_COMMON, *(f"proxy.interfaces.{i}.listen" for i in _IFACES),
              *(f"proxy.interfaces.{i}.transport" for i in _IFACES),
              "proxy.interfaces.hook", "proxy.interfaces.redirect", "proxy.limits",
              "proxy.vcr_spool_max", "proxy.metrics.listen"),
}


@dataclasses.dataclass(frozen=True)
class FixedChange:
    key: str
    old: object
    new: object


_MISSING = object()


def _get(obj: object, path: str) -> object:
    for part in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, path: str, value: object, old_root: Any) -> Any:
    """`obj` with `path` set to `value`; an intermediate section that is None on one side
    (a federation interface added or removed) is taken whole from `old_root`."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    child, old_child = getattr(obj, head), getattr(old_root, head)
    if child is None or old_child is None:
        return dataclasses.replace(obj, **{head: old_child})
    return dataclasses.replace(obj, **{head: _set(child, rest, value, old_child)})


def fixed_changes(old: ProviderConfig, new: ProviderConfig, role: str) -> list[FixedChange]:
    """The keys of `role` that differ between `old` and `new` and cannot change live."""
    out = []
    for key in FIXED_KEYS.get(role, _COMMON):
        a, b = _get(old, key), _get(new, key)
        if a != b:
            out.append(FixedChange(key, a, b))
    return out


def keep_fixed(old: ProviderConfig, new: ProviderConfig,
               changes: list[FixedChange]) -> ProviderConfig:
    """`new` with every changed fixed key set back to its running value."""
    for ch in changes:
        new = _set(new, ch.key, ch.old, old)
    return new


async def reload_config(role: str, old: ProviderConfig, apply: Reloader | None
                        ) -> ProviderConfig:
    """Load `old.path` again, log the keys kept, apply the rest; the config now running
    (`old` when the new one does not load or cannot be applied)."""
    log.info("SIGHUP: reloading %s", old.path)
    if apply is None:
        log.warning("reload: %s is still starting; the running configuration is kept", role)
        return old
    try:
        new = await asyncio.to_thread(load_config, old.path, files_of=(role,))
    except ConfigError as exc:
        for line in exc.messages:
            log.error("reload: %s", printable(line, None))
        log.error("reload failed: the running configuration is kept")
        return old
    except OSError as exc:
        log.error("reload failed: %s; the running configuration is kept", exc)
        return old
    changes = fixed_changes(old, new, role)
    for ch in changes:
        log.warning("reload: %s cannot change while %s runs (%s -> %s): kept; restart to "
                    "apply", ch.key, role, printable(ch.old), printable(ch.new))
    merged = keep_fixed(old, new, changes)
    try:
        await apply(merged)
    except Exception as exc:
        log.error("reload failed: %s; the running configuration is kept",
                  printable(str(exc) or repr(exc)))
        return old
    log.info("reload done (%d key(s) kept until a restart)", len(changes))
    return merged
