"""Issue 16 item 5 (pvp side): with `logging.format: json` the validation outcome is logged on
both sides with the number, peer, outcome and reason as separate fields. Two real `vipr pvp`
processes (the originating side with a stand-in overlay.sock, as in test_pvp_e2e)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pvp_harness import CALLEE
from test_pvp_e2e import _import, _two_pvp_daemons, base, pki_cfgs, run

from tests.ports import free_port

__all__ = ["base"]   # the fixture, imported for this module

pytestmark = pytest.mark.timeout(120)


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(errors="replace").splitlines()
            if line.startswith("{")]


async def test_validation_outcome_fields_on_both_sides(base: Path) -> None:
    b_port = free_port()
    a_cfg, b_cfg, node_a, node_b = await pki_cfgs(base, b_port)
    for cfg in (a_cfg, b_cfg):
        cfg.write_text(cfg.read_text().replace("logging: {level: debug}",
                                               "logging: {level: info, format: json}"))
    await _import(a_cfg, b_cfg, base)

    async def route_learned(params: dict[str, Any]) -> dict[str, Any]:
        return {"cached": True}

    async with _two_pvp_daemons(base, a_cfg, b_cfg, b_port, route_learned,
                                (node_a, node_b)) as a:
        rc, out, err = await run("validate", CALLEE, "--config", str(a_cfg))
        assert rc == 0 and out.startswith(f"{CALLEE}: learned"), out + err
    client = [r for r in records(a.log) if r.get("outcome") == "learned"]
    server = [r for r in records(b_cfg.parent / "pvp.log") if r.get("outcome") == "ok"]
    assert len(client) == 1 and len(server) == 1, (client, server)
    c, s = client[0], server[0]
    assert c["number"] == CALLEE and c["peer"] == node_b and c["reason"]
    assert isinstance(c["vcr_id"], int) and c["call_id"] == "e2e-call-1"
    assert s["number"] == CALLEE and s["peer"] and s["reason"] == "ticket"
