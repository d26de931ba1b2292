"""The PSTN simulator's configuration and number plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from vipr.testnet.numberplan import PstnConfigError, load_pstn_config, parse_pstn_config

DOC = {
    "listen": "127.0.0.1:5080",
    "providers": {
        "provider-a": {"trunk": "127.0.0.1:5062", "numbers": ["+1408555[0000-0099]"]},
        "provider-b": {"trunk": "127.0.0.1:5162", "numbers": ["+44 20 7123 4567"]},
    },
    "skew": {"provider": "provider-b", "delay": "300ms"},
}


def test_routes_by_number_any_spelling() -> None:
    cfg = parse_pstn_config(DOC)
    plan = cfg.plan
    assert plan.route("+14085550042").name == "provider-a"    # type: ignore[union-attr]
    assert plan.route("+442071234567").name == "provider-b"   # type: ignore[union-attr]
    assert plan.route("+44 (20) 7123-4567").name == "provider-b"  # type: ignore[union-attr]
    assert plan.route("+14085550100") is None
    assert plan.route("not a number") is None


def test_trunk_and_skew() -> None:
    cfg = parse_pstn_config(DOC)
    b = cfg.plan.by_trunk("127.0.0.1", 5162)
    a = cfg.plan.by_trunk("127.0.0.1", 5062)
    assert b is not None and a is not None
    assert cfg.delay_towards(b) == pytest.approx(0.3)
    assert cfg.delay_towards(a) == 0.0 and cfg.delay_towards(None) == 0.0
    assert cfg.plan.by_trunk("127.0.0.1", 9999) is None


@pytest.mark.parametrize("change, word", [
    ({"listen": "nowhere"}, "listen"),
    ({"providers": {}}, "providers"),
    ({"providers": {"x": {"trunk": "127.0.0.1:1", "numbers": ["12"]}}}, "numbers"),
    ({"providers": {"x": {"trunk": "127.0.0.1:1", "numbers": []}}}, "numbers"),
    ({"providers": {"x": {"trunk": "127.0.0.1"}}}, "trunk"),
    ({"skew": {"provider": "nobody", "delay": 1}}, "skew.provider"),
    ({"skew": {"provider": "provider-a", "delay": "soon"}}, "skew.delay"),
    ({"colour": "blue"}, "colour"),
])
def test_errors_name_the_key(change: dict[str, object], word: str) -> None:
    with pytest.raises(PstnConfigError, match=word):
        parse_pstn_config({**DOC, **change})


def test_load_from_file(tmp_path: Path) -> None:
    import yaml

    p = tmp_path / "pstn.yaml"
    p.write_text(yaml.safe_dump(DOC))
    cfg = load_pstn_config(p)
    assert cfg.path == p and cfg.listen.port == 5080
    p.write_text("listen: [")
    with pytest.raises(PstnConfigError, match=r"pstn\.yaml"):
        load_pstn_config(p)
