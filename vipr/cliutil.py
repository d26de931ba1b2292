"""Helpers shared by every `vipr` command module: options, config loading, output."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from vipr.config import ConfigError, ProviderConfig, load_config

__all__ = [
    "EXIT_CONFIG",
    "EXIT_RUNTIME",
    "LIMIT",
    "config_option",
    "db_option",
    "fail",
    "json_option",
    "load_config_or_fail",
    "one_line_error",
    "print_json",
    "print_table",
    "resolve_db",
]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONFIG = 2  # bad configuration or usage (click uses 2 for usage errors too)
EXIT_RUNTIME = 1  # the command was valid but failed (a file, the network, a daemon)

# `--limit N` of the list commands: 0 = all; SQLite's LIMIT takes a signed 64-bit integer.
LIMIT = click.IntRange(0, 2**63 - 1)


def one_line_error(exc: BaseException) -> str:
    """An exception as one line for an operator: the file and the OS's reason for an OSError,
    else the message (first line only), prefixed with the type when the message is empty."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        return f"{' → '.join(names)}: {exc.strerror}" if names else exc.strerror
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read"
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def config_option(f: F) -> F:
    """`--config/-c FILE` (env VIPR_CONFIG) → parameter `config: Path | None`."""
    return click.option(
        "--config",
        "-c",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="VIPR_CONFIG",
        default=None,
        help="Provider config (YAML). Env: VIPR_CONFIG.",
    )(f)


class DatabaseParam(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.2
    """An SQLite file (a Path) or a `postgresql://` URL (kept as text)."""

    name = "FILE|URL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Path | str:
        if isinstance(value, Path):
            return value
        text = str(value)
        if text.startswith(("postgresql://", "postgres://")):
            return text
        if "://" in text:
            self.fail(f"{text!r}: expected a file path or a postgresql:// URL", param, ctx)
        return Path(text)


def db_option(f: F) -> F:
    """`--db FILE|URL` → parameter `db: Path | str | None` (overrides the config's database)."""
    return click.option(
        "--db",
        "db",
        type=DatabaseParam(),
        default=None,
        help="SQLite file or postgresql:// URL (instead of the database named in --config).",
    )(f)


def json_option(f: F) -> F:
    """`--json` → parameter `as_json: bool`."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")(f)


def fail(msg: str, code: int = 1) -> NoReturn:
    """Print "error: msg" to stderr and exit with `code`."""
    click.echo(f"error: {msg}", err=True)
    raise SystemExit(code)


def load_config_or_fail(
    path: Path | str | None, *, files_of: Collection[str] = ()
) -> ProviderConfig:
    """The config, or every error message on stderr and exit 2 (also when `path` is None).

    A daemon passes its role as `files_of`: its certificates, keys and overlay document are
    checked before it starts (`vipr.config.files`), so a bad file is one FILE:LINE line."""
    if path is None:
        fail("give --config FILE (or set VIPR_CONFIG)", EXIT_CONFIG)
    try:
        return load_config(path, files_of=files_of)
    except ConfigError as exc:
        for line in exc.messages:
            click.echo(line, err=True)
        raise SystemExit(EXIT_CONFIG) from None


def resolve_db(config: Path | None, db: Path | str | None) -> Path | str:
    """The database from --db, else from --config; exit 2 when neither is given."""
    if db is not None:
        return db
    if config is None:
        fail("give --config FILE (or --db FILE, or set VIPR_CONFIG)", EXIT_CONFIG)
    return load_config_or_fail(config).database


def _plain(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def print_json(obj: object) -> None:
    """One JSON document on stdout (dataclasses, paths, bytes as hex, tuples handled)."""
    click.echo(json.dumps(obj, default=_plain, indent=2, ensure_ascii=False))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None
) -> None:
    """A table on stdout: rich when stdout is a terminal, aligned plain text otherwise."""
    cells = [[_cell(v) for v in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title)
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=False)]
    if title:
        click.echo(title)
    for row in [list(columns), *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())
