"""`vipr validations list` and `vipr validate` (no daemon) through the real click group."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner
from pvp_harness import cleanup, short_dir, write_config

from vipr.cli import main
from vipr.config import load_config
from vipr.store import Store, ValidationRecord


def test_validations_list_plain_and_json() -> None:
    base = short_dir()
    try:
        cfg_path = write_config(base, "a")
        cfg = load_config(cfg_path)

        async def seed() -> None:
            async with Store.open(cfg.database) as s:
                await s.log_validations([
                    ValidationRecord(None, 1_800_000_000.0, "server", "+4930123456", 7,
                                     "127.0.0.1:4000", "failed", "wrong-password (VCR 7: 1)"),
                    ValidationRecord(None, 1_800_000_060.0, "client", "+4930123456", 3,
                                     "b" * 32, "learned", "sip:b;transport=tls from x"),
                ])

        asyncio.run(seed())
        r = CliRunner().invoke(main, ["validations", "list", "--config", str(cfg_path)])
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        assert lines[0].split() == ["at", "role", "number", "vcr", "peer", "outcome", "reason"]
        assert "learned" in lines[1] and "2027-01-15" in lines[1]
        assert "wrong-password" in lines[2]
        r = CliRunner().invoke(main, ["validations", "list", "--db", str(cfg.database),
                                      "--json", "--limit", "1"])
        assert r.exit_code == 0, r.output
        (rec,) = json.loads(r.output)
        assert rec["outcome"] == "learned" and rec["role"] == "client"
    finally:
        cleanup(base)


def test_validate_without_a_daemon_says_so() -> None:
    base = short_dir()
    try:
        cfg_path = write_config(base, "a")
        r = CliRunner().invoke(main, ["validate", "+4930123456", "--config", str(cfg_path)])
        assert r.exit_code == 1
        assert "is `vipr pvp` running?" in r.output
        r = CliRunner().invoke(main, ["validate", "nonsense", "--config", str(cfg_path)])
        assert r.exit_code == 2
    finally:
        cleanup(base)
