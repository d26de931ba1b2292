"""The demo workdir: every config passes the config check, ports are distinct."""

from __future__ import annotations

from pathlib import Path

from vipr.config import load_config
from vipr.config_cli import missing_files
from vipr.reload.overlay_config import load_overlay_config
from vipr.reload.wire.security import cert_node_ids, load_certificate
from vipr.testnet.numberplan import load_pstn_config
from vipr.testnet.workdir import make_workdir


def test_workdir_configs_are_complete_and_consistent(tmp_path: Path) -> None:
    lay = make_workdir(tmp_path)
    cfgs = {k: load_config(p) for k, p in lay.configs.items()}
    for key, cfg in cfgs.items():
        assert missing_files(cfg) == [], key
        assert cfg.pvp.max_delay <= 1.5 and cfg.pvp.min_duration < 1.5   # demo timers
        assert cfg.proxy.interfaces.federation is not None
        nofed = load_config(lay.nofed_configs[key])
        assert nofed.proxy.interfaces.federation is None
        assert nofed.database == cfg.database and nofed.numbers == cfg.numbers
    assert [c.overlay.create for c in cfgs.values()] == [True, False, False]
    ports = [hp.port for c in cfgs.values() for hp in (
        c.overlay.listen, c.pvp.listen, c.proxy.interfaces.internal.listen,
        c.proxy.interfaces.pstn.listen, c.proxy.interfaces.federation.listen,  # type: ignore[union-attr]
        c.proxy.interfaces.internal.target)]  # type: ignore[union-attr]
    pstn = load_pstn_config(lay.pstn_config)
    ports.append(pstn.listen.port)
    assert len(ports) == len(set(ports))
    # the PSTN routes B's number to B, although C claims it too
    assert lay.b_number in cfgs["b"].numbers and lay.b_number in cfgs["c"].numbers
    route = pstn.plan.route(lay.b_number)
    assert route is not None and route.name == "provider-b"
    assert route.trunk == cfgs["b"].proxy.interfaces.pstn.listen
    assert all(c.proxy.interfaces.pstn.gateway == pstn.listen for c in cfgs.values())
    # overlay: one document, A bootstraps, every node certificate from its CA
    ov = load_overlay_config(cfgs["a"].overlay.configuration)  # type: ignore[arg-type]
    assert ov.bootstrap_nodes[0].port == cfgs["a"].overlay.listen.port
    ids = {k: cert_node_ids(load_certificate(c.overlay.cert.read_bytes()))  # type: ignore[union-attr]
           for k, c in cfgs.items()}
    assert all(len(v) == 1 for v in ids.values())
    assert ids["c"][0] < ids["b"][0]     # C's claim is listed (and tried) before B's


def test_testnet_init_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vipr", "testnet", "init", "--out",
                          str(tmp_path), "--base-port", "21000"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "provider-b: " in out.stdout and "pstn: " in out.stdout
    cfg = load_config(tmp_path / "provider-b.yaml")
    assert cfg.proxy.interfaces.internal.listen.port == 21100
    assert load_pstn_config(tmp_path / "pstn.yaml").listen.port == 21380
