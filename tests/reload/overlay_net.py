"""Provider configs for overlay tests, made with `vipr ca init` / `vipr ca issue` (real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.ports import free_port_block
from vipr.cli import main

OVERLAY_NAME = "overlay.vipr-test.example"


def make_overlay(tmp: Path, providers: list[tuple[str, list[str], int]],
                 *, base_port: int | None = None, per_node: bool = True) -> list[Path]:
    """`providers`: (name, numbers, node count). Provider 0 creates the overlay. Returns the
    YAML config paths. `per_node`: one certificate per node (`vipr ca issue --per-node`)."""
    total = sum(n for _, _, n in providers)
    port = base_port or free_port_block(total + 3 * len(providers))
    ov = tmp / "overlay"
    r = CliRunner().invoke(main, ["ca", "init", "--overlay", OVERLAY_NAME, "--out", str(ov),
                                  "--bootstrap", f"127.0.0.1:{port}"])
    assert r.exit_code == 0, r.output
    paths = []
    p = port
    for i, (name, numbers, nodes) in enumerate(providers):
        r = CliRunner().invoke(main, ["ca", "issue", "--config", str(ov / "overlay.xml"),
                                      "--out", str(ov), "--user", f"node@{name}.example",
                                      "--node-ids", str(nodes), "--name", name, "--json",
                                      *(["--per-node"] if per_node else [])])
        assert r.exit_code == 0, r.output
        info = json.loads(r.output)
        nums = "\n".join(f'  - "{n}"' for n in numbers)
        cfg = tmp / f"{name}.yaml"
        cfg.write_text(f"""
provider:
  name: {name}
  domain: {name}.example
  vservice: "{i + 1:016x}"
numbers:
{nums}
runtime_dir: run/{name}
database: state/{name}/vipr.db
overlay:
  configuration: {ov / 'overlay.xml'}
  cert: {info['cert']}
  key: {info['key']}
  listen: "127.0.0.1:{p}"
  create: {'true' if i == 0 else 'false'}
  nodes: {nodes}
pvp:
  listen: "127.0.0.1:{p + 1000 if p + 1000 < 65535 else p - 1000}"
proxy:
  interfaces:
    internal:
      listen: "127.0.0.1:0"
    pstn:
      listen: "127.0.0.1:0"
""")
        paths.append(cfg)
        p += nodes
    return paths
