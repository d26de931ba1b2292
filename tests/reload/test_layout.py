"""The package layout says what is pure: nothing under vipr/reload/core/ or vipr/reload/wire/
imports an event loop, a clock, a socket, a randomness source, the store or the asyncio shell
(issue 17). Checked on the import statements themselves (ast), so a lazy import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import vipr.reload

RELOAD = Path(vipr.reload.__file__).parent
FORBIDDEN = ("asyncio", "time", "socket", "random", "ssl", "selectors", "threading",
             "vipr.store", "vipr.reload.aio", "vipr.reload.tools")
# The protocol core goes further: no randomness or clock reads through os/datetime, no log
# (it returns notes and outcomes; the carriers log), no simulator.
CORE_ONLY = ("os", "datetime", "logging", "vipr.reload.sim")


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_pure_packages_import_no_io() -> None:
    pure = sorted([*RELOAD.glob("core/*.py"), *RELOAD.glob("wire/*.py")])
    assert len(pure) >= 15  # the packages exist and are populated
    bad = {str(p.relative_to(RELOAD)): [n for n in _imports(p) if _forbidden(n)] for p in pure}
    assert {k: v for k, v in bad.items() if v} == {}


def test_core_reads_no_clock_or_entropy_and_logs_nothing() -> None:
    core = sorted(RELOAD.glob("core/*.py"))
    assert {p.name for p in core} >= {"chord_protocol.py", "storage_protocol.py",
                                       "vipr_usage.py", "storage.py", "replication.py"}
    bad = {p.name: [n for n in _imports(p)
                    if any(n == f or n.startswith(f + ".") for f in CORE_ONLY)] for p in core}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import asyncio\nfrom time import monotonic\n"
                 "def g():\n    from vipr.store import Store\n")
    assert [n for n in _imports(f) if _forbidden(n)] == ["asyncio", "time", "time.monotonic",
                                                         "vipr.store", "vipr.store.Store"]


def test_reload_has_no_flat_protocol_modules() -> None:
    """The protocol lives in wire/, core/ and aio/; only configuration and CLI stay at the top."""
    top = sorted(p.name for p in RELOAD.glob("*.py"))
    assert top == ["__init__.py", "ca.py", "cli.py", "config_signature.py", "errors.py",
                   "overlay_cli.py", "overlay_config.py"]


def test_simulator_is_deterministic_by_construction() -> None:
    """The simulator runs the core in simulated time: no event loop, clock or socket."""
    sim = sorted(RELOAD.glob("sim/*.py"))
    assert sim
    io = ("asyncio", "time", "socket", "ssl", "vipr.reload.aio")
    bad = {p.name: [n for n in _imports(p) if any(n == f or n.startswith(f + ".") for f in io)]
           for p in sim}
    assert {k: v for k, v in bad.items() if v} == {}
