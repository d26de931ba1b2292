"""`vipr demo` (placeholder until the orchestration lands)."""

from __future__ import annotations

from pathlib import Path


def run_demo(workdir: Path | None, *, as_json: bool = False, keep: bool = False) -> int:
    raise NotImplementedError
