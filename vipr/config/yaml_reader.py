"""YAML node tree → checked values, every problem reported as "FILE:LINE: key.path: reason".

The reader keeps each value's line, hints "did you mean …?" for misspelt keys, and words
YAML syntax errors with the pure-Python parser even when libyaml did the parsing.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vipr.config.values import HostPort, format_duration, parse_duration, valid_domain
from vipr.e164 import E164Error, NumberBlock, NumberSet, parse_entry

T = TypeVar("T")

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """The configuration is invalid; `messages` holds one line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


# Numbers one provider config may serve (blocks counted in full): every one is published as
# a claim in the overlay; a block of 10^14 would never finish publishing.
MAX_NUMBERS = 100_000_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")


class BadValue(Exception):
    """One invalid value (the reader adds file, line and key path)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def key_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


class YamlReader:
    """Walks the composed YAML tree, converting values and collecting every error."""

    def __init__(
        self, file: str, base: Path, loader: Any, homes: Callable[[str, str], str]
    ) -> None:
        self.file = file
        self.base = base
        self.loader = loader
        self.homes = homes
        self.errors: list[tuple[int, int, str]] = []
        self.nodes: dict[str, Node] = {}  # key path → value node, of every key read

    def error(self, where: Node | int, path: str, msg: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.errors.append((line, len(self.errors), f"{self.file}:{line}: {path}: {msg}"))

    def value(self, node: Node) -> Any:
        """The Python value of a scalar node (None, bool, int, float or str)."""
        if not isinstance(node, ScalarNode):
            return node
        return self.loader.construct_object(node, deep=True)

    def got(self, node: Node) -> str:
        """How a value reads in an error message."""
        if isinstance(node, SequenceNode):
            return "got a list"
        if isinstance(node, MappingNode):
            return "got a mapping"
        try:
            v = self.value(node)
        except yaml.YAMLError:
            return f"got {node.value!r}"
        if v is None:
            return "got nothing"
        if isinstance(v, bool):
            return f"got boolean {str(v).lower()}"
        if isinstance(v, int | float):
            return f"got number {v}"
        s = str(v)
        return f"got {s[:60] + '…' if len(s) > 60 else s!r}"

    def expect(self, node: Node, what: str) -> BadValue:
        return BadValue(f"expected {what} ({self.got(node)})")

    def mapping(
        self, node: Node | None, path: str, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Node] | None:
        """Keys → value nodes; unknown, duplicate and missing keys become errors."""
        if node is None or (isinstance(node, ScalarNode) and self.value(node) is None):
            out: dict[str, Node] = {}
            for key in required:
                self.error(
                    node if node is not None else 1, key_path(path, key), "required key missing"
                )
            return out
        if not isinstance(node, MappingNode):
            self.error(node, path or "(document)", f"expected a mapping ({self.got(node)})")
            return None
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.error(node, path or "(document)", f"bad merge: {getattr(exc, 'problem', exc)}")
            return None
        merged = len(node.value) - explicit
        out = {}
        first: dict[str, tuple[int, bool]] = {}
        for i, (knode, vnode) in enumerate(node.value):
            kval: object = self.value(knode) if isinstance(knode, ScalarNode) else None
            if not isinstance(kval, str):
                self.error(knode, path or "(document)", f"keys must be names ({self.got(knode)})")
                continue
            key = kval
            kpath = key_path(path, key)
            if key in first and not first[key][1]:
                self.error(knode, kpath, f"duplicate key (first at line {first[key][0]})")
                continue
            first[key] = (line_of(knode), i < merged)
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                home = self.homes(key, path)
                if close:
                    hint = f"unknown key; did you mean {close[0]!r}?"
                elif home:
                    hint = f"unknown key here; it belongs {home}"
                else:
                    hint = f"unknown key; expected one of: {', '.join(allowed)}"
                self.error(knode, kpath, hint)
                continue
            out[key] = vnode
        for key in required:
            if key not in out:
                self.error(node, key_path(path, key), "required key missing")
        return out

    def get(
        self,
        m: dict[str, Node] | None,
        path: str,
        key: str,
        conv: Callable[[Node, str], T],
        default: T,
    ) -> T:
        """Convert m[key] (errors recorded, value None) or return the default when absent."""
        if m is None or key not in m:
            return default
        kpath = key_path(path, key)
        self.nodes[kpath] = m[key]
        try:
            return conv(m[key], kpath)
        except BadValue as exc:
            self.error(m[key], kpath, exc.msg)
            return cast(T, None)

    # ---- converters: (node, key path) → value, raising BadValue

    def string(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not v.strip():
            raise self.expect(node, "a non-empty string")
        return v.strip()

    def name(self, node: Node, path: str) -> str:
        v = self.string(node, path)
        if not _NAME.match(v):
            raise self.expect(node, "a name of letters, digits, '.', '_', '-' (≤63)")
        return v

    def domain(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not valid_domain(v):
            raise self.expect(node, "a DNS domain name like 'a.example.net'")
        return v.lower().removesuffix(".")

    def domain_pattern(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not valid_domain(v.removeprefix("*.")):
            raise self.expect(node, "a domain name, optionally '*.' + domain")
        return v.lower().removesuffix(".")

    def vservice(self, node: Node, path: str) -> str:
        v = self.value(node)
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise BadValue(
                f"expected 16 hex digits as a quoted string ({self.got(node)}: YAML reads "
                f'unquoted digits as a number; write it in quotes, like "0000000000000001")'
            )
        if not isinstance(v, str) or not _HEX16.match(v):
            raise self.expect(node, '16 hex digits, like "0000000000000001"')
        return v.lower()

    def duration(self, minimum: float = 0.0, strict: bool = False) -> Callable[[Node, str], float]:
        def conv(node: Node, path: str) -> float:
            v = self.value(node)
            try:
                seconds = parse_duration(v)
            except ValueError as exc:
                raise self.expect(node, str(exc).removeprefix("expected ")) from None
            if seconds < minimum or (strict and seconds <= minimum):
                op = ">" if strict else "≥"
                raise self.expect(node, f"a duration {op} {format_duration(minimum)}")
            return seconds

        return conv

    def integer(self, low: int, high: int | None = None) -> Callable[[Node, str], int]:
        def conv(node: Node, path: str) -> int:
            v = self.value(node)
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or v < low
                or (high is not None and v > high)
            ):
                rng = f"{low}..{high}" if high is not None else f"≥ {low}"
                raise self.expect(node, f"an integer {rng}")
            return v

        return conv

    def boolean(self, node: Node, path: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            raise self.expect(node, "true or false")
        return v

    def choice(self, options: Sequence[str]) -> Callable[[Node, str], str]:
        def conv(node: Node, path: str) -> str:
            v = self.value(node)
            if not isinstance(v, str) or v.lower() not in options:
                raise self.expect(node, "one of " + "|".join(options))
            return v.lower()

        return conv

    def path(self, node: Node, path: str) -> Path:
        v = self.value(node)
        if not isinstance(v, str) or not v.strip():
            raise self.expect(node, "a file path")
        p = Path(v.strip()).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.base / p))

    def database(self, node: Node, path: str) -> Path | str:
        """An SQLite file path, or a `postgresql://` URL kept as written (DESIGN §12)."""
        v = self.value(node)
        if isinstance(v, str) and v.strip().startswith(("postgresql://", "postgres://")):
            return v.strip()
        if isinstance(v, str) and "://" in v:
            raise self.expect(node, "a file path or a postgresql:// URL")
        return self.path(node, path)

    def hostport(self, allow_port_zero: bool = True) -> Callable[[Node, str], HostPort]:
        def conv(node: Node, path: str) -> HostPort:
            v = self.value(node)
            if not isinstance(v, str):
                raise BadValue(f'expected "host:port" in quotes ({self.got(node)})')
            try:
                return HostPort.parse(v, allow_port_zero=allow_port_zero)
            except ValueError as exc:
                raise BadValue(f"{exc} ({self.got(node)})") from None

        return conv

    def sip_uri(self, node: Node, path: str) -> str:
        v = self.value(node)
        if not isinstance(v, str) or not re.match(r"^sips?:\S+$", v.strip(), re.IGNORECASE):
            raise self.expect(node, 'a SIP URI like "sip:proxy.a.example.net;transport=tls"')
        return v.strip()

    def optional(self, conv: Callable[[Node, str], T]) -> Callable[[Node, str], T | None]:
        def opt(node: Node, path: str) -> T | None:
            if isinstance(node, ScalarNode) and self.value(node) is None:
                return None
            return conv(node, path)

        return opt

    def items(self, node: Node, path: str) -> list[Node]:
        if isinstance(node, ScalarNode) and self.value(node) is None:
            return []
        if not isinstance(node, SequenceNode):
            raise self.expect(node, "a list")
        return list(node.value)

    def domain_list(self, node: Node, path: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.items(node, path)):
            try:
                out.append(self.domain_pattern(item, key_path(path, i)))
            except BadValue as exc:
                self.error(item, key_path(path, i), exc.msg)
        return tuple(out)

    def numbers(self, node: Node, path: str) -> NumberSet:
        entries: list[str | NumberBlock] = []
        seen: dict[str, int] = {}
        total = 0
        for i, item in enumerate(self.items(node, path)):
            ipath = key_path(path, i)
            v = self.value(item)
            if isinstance(v, int) and not isinstance(v, bool):
                self.error(
                    item, ipath,
                    f'expected an E.164 number in quotes, like "+{v}" ({self.got(item)}: '
                    "YAML reads an unquoted +number as an integer)",
                )  # fmt: skip
                continue
            if not isinstance(v, str):
                self.error(item, ipath, f"expected an E.164 number or block ({self.got(item)})")
                continue
            try:
                entry = parse_entry(v)
            except E164Error as exc:
                self.error(item, ipath, f"expected an E.164 number or block: {exc}")
                continue
            if str(entry) in seen:
                self.error(item, ipath, f"duplicate of {path}[{seen[str(entry)]}]")
                continue
            size = len(entry) if isinstance(entry, NumberBlock) else 1
            if total + size > MAX_NUMBERS:
                self.error(item, ipath,
                           f"expected at most {MAX_NUMBERS:,} numbers per provider in all, but "
                           f"this entry brings the total from {total:,} to {total + size:,}")
                continue
            total += size
            seen[str(entry)] = i
            entries.append(entry)
        return NumberSet(entries)


def read_yaml(
    path: str | Path,
    build: Callable[[YamlReader, Node | None], T | None],
    homes: Callable[[str, str], str] = lambda key, path: "",
) -> T:
    """Parse the YAML file and `build` a value from its node tree; raise `ConfigError` with
    every problem found. `homes(key, path)` says where else an unknown key belongs."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{file}:1: (file): cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{file}:{line}: (file): expected UTF-8 text"]) from None
    base = Path(os.path.abspath(path)).parent
    # libyaml when present: ~10x faster on a long numbers list, same nodes and marks.
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ConfigError([_syntax_message(file, text, exc)]) from None
        except RecursionError:  # the pure-Python composer recurses once per nesting level
            raise ConfigError([_too_deep(file)]) from None
        r = YamlReader(file, base, loader, homes)
        try:
            out = build(r, root)
        except yaml.MarkedYAMLError as exc:  # e.g. an unknown !tag met while converting
            r.errors.append((0, len(r.errors), _yaml_message(file, text, exc)))
            out = None
        except RecursionError:
            raise ConfigError([_too_deep(file)]) from None
    finally:
        loader.dispose()
    if r.errors or out is None:
        raise ConfigError([msg for _, _, msg in sorted(r.errors)])
    return out


def _syntax_message(file: str, text: str, exc: yaml.YAMLError) -> str:
    """Describe a YAML syntax error; the pure-Python parser words it better than libyaml."""
    if _Loader is not yaml.SafeLoader:
        slow = yaml.SafeLoader(text)
        try:
            slow.get_single_node()
        except yaml.YAMLError as better:
            exc = better
        except RecursionError:  # nested deeper than Python recurses: keep libyaml's words
            pass
        finally:
            slow.dispose()
    if isinstance(exc, yaml.MarkedYAMLError):
        return _yaml_message(file, text, exc)
    return f"{file}:1: (yaml): invalid YAML: {exc}"


def _too_deep(file: str) -> str:
    return f"{file}:1: (yaml): invalid YAML: nested too deeply (a config needs a few levels)"


def _yaml_message(file: str, text: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or exc.context or "invalid YAML"
    src = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    hint = ""
    if ("[" in src or "]" in src) and "nesting" not in problem:
        hint = '; put values with "[" in quotes, like "[::1]:5060" or "+1408555[0000-0999]"'
    return f"{file}:{line}: (yaml): invalid YAML: {problem}{hint}"
