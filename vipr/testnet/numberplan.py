"""The PSTN simulator's configuration: listen address, number plan, clock skew (pure).

Example (`vipr pstn --config pstn.yaml`)::

    listen: "127.0.0.1:5080"          # the gateway every provider's pstn trunk points at
    providers:
      provider-a:
        trunk: "127.0.0.1:5062"       # that provider's proxy `pstn` interface
        numbers: ["+1408555[0000-0099]"]
      provider-b:
        trunk: "127.0.0.1:5162"
        numbers: ["+442071234567"]
    skew:                             # optional: the PSTN is late towards one provider
      provider: provider-b
      delay: 300ms                    # 200 OK and BYE relayed to it wait this long
    answer_timeout: 30s               # no final answer from the callee side → 408

A number served by several providers goes to the first one listed (the real PSTN has one
owner per number).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vipr.config import HostPort, parse_duration
from vipr.e164 import E164Error, NumberSet, normalize_e164, parse_entry

__all__ = ["NumberPlan", "PstnConfig", "PstnConfigError", "Provider", "load_pstn_config",
           "parse_pstn_config"]


class PstnConfigError(ValueError):
    """The PSTN configuration is invalid (the message names file, key and reason)."""


@dataclass(frozen=True)
class Provider:
    name: str
    trunk: HostPort
    numbers: NumberSet


@dataclass(frozen=True)
class NumberPlan:
    """Number → provider, and trunk address → provider."""

    providers: tuple[Provider, ...]

    def route(self, number: str) -> Provider | None:
        """The provider serving `number` (any E.164 spelling), None when nobody does."""
        try:
            n = normalize_e164(number)
        except E164Error:
            return None
        return next((p for p in self.providers if n in p.numbers), None)

    def by_trunk(self, host: str, port: int) -> Provider | None:
        """The provider whose trunk is host:port (the source of a call), if any."""
        return next((p for p in self.providers
                     if p.trunk.host == host.lower() and p.trunk.port == port), None)


@dataclass(frozen=True)
class PstnConfig:
    listen: HostPort
    plan: NumberPlan
    skew_provider: str | None = None
    skew_delay: float = 0.0
    answer_timeout: float = 30.0
    path: Path | None = None

    def delay_towards(self, provider: Provider | None) -> float:
        """Extra delay of the 200 OK and BYE relayed to `provider` (the skewed side)."""
        if provider is not None and provider.name == self.skew_provider:
            return self.skew_delay
        return 0.0


def _hostport(v: Any, where: str) -> HostPort:
    if not isinstance(v, str):
        raise PstnConfigError(f"{where}: expected \"host:port\" (got {v!r})")
    try:
        return HostPort.parse(v, allow_port_zero=False)
    except ValueError as exc:
        raise PstnConfigError(f"{where}: {exc}") from None


def _duration(v: Any, where: str) -> float:
    try:
        return parse_duration(v)
    except ValueError as exc:
        raise PstnConfigError(f"{where}: {exc} (got {v!r})") from None


def parse_pstn_config(data: Any, source: str = "pstn config") -> PstnConfig:
    """Check and convert the YAML document (already loaded); PstnConfigError names the key."""
    if not isinstance(data, dict):
        raise PstnConfigError(f"{source}: expected a mapping at the top level")
    unknown = set(data) - {"listen", "providers", "skew", "answer_timeout"}
    if unknown:
        raise PstnConfigError(f"{source}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    listen = _hostport(data.get("listen", "127.0.0.1:5080"), f"{source}: listen")
    provs = data.get("providers")
    if not isinstance(provs, dict) or not provs:
        raise PstnConfigError(f"{source}: providers: expected a mapping name → trunk/numbers")
    providers: list[Provider] = []
    for name, p in provs.items():
        where = f"{source}: providers.{name}"
        if not isinstance(p, dict) or set(p) - {"trunk", "numbers"}:
            raise PstnConfigError(f"{where}: expected a mapping with trunk and numbers")
        trunk = _hostport(p.get("trunk"), f"{where}.trunk")
        nums = p.get("numbers")
        if not isinstance(nums, list) or not nums:
            raise PstnConfigError(f"{where}.numbers: expected a non-empty list")
        try:
            numbers = NumberSet(parse_entry(str(n)) for n in nums)
        except E164Error as exc:
            raise PstnConfigError(f"{where}.numbers: {exc}") from None
        providers.append(Provider(str(name), trunk, numbers))
    skew_provider, skew_delay = None, 0.0
    skew = data.get("skew")
    if skew is not None:
        if not isinstance(skew, dict) or set(skew) - {"provider", "delay"}:
            raise PstnConfigError(f"{source}: skew: expected a mapping with provider and delay")
        skew_provider = str(skew.get("provider"))
        if skew_provider not in provs:
            raise PstnConfigError(f"{source}: skew.provider: {skew_provider!r} is not a provider")
        skew_delay = _duration(skew.get("delay", 0), f"{source}: skew.delay")
    timeout = _duration(data.get("answer_timeout", 30), f"{source}: answer_timeout")
    return PstnConfig(listen, NumberPlan(tuple(providers)), skew_provider, skew_delay, timeout)


def load_pstn_config(path: str | Path) -> PstnConfig:
    """Read a PSTN simulator YAML file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PstnConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PstnConfigError(f"{p}: expected UTF-8 text (a YAML file)") from None
    except RecursionError:
        raise PstnConfigError(f"{p}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        raise PstnConfigError(f"{p}: {' '.join(str(exc).split())}") from None
    cfg = parse_pstn_config(data, str(p))
    return PstnConfig(cfg.listen, cfg.plan, cfg.skew_provider, cfg.skew_delay,
                      cfg.answer_timeout, p)
