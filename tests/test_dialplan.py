"""Number normalisation and caller identity (DESIGN §11): vipr.dialplan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vipr.config import ConfigError, load_config
from vipr.dialplan import Dialplan, DialplanError
from vipr.e164 import E164Error, NumberSet
from vipr.proxy.routing import RouteCache, decide
from vipr.store.models import Route

UK = Dialplan(country_code="44")
NANP = Dialplan(country_code="1", national_prefix="1", international_prefix="011")


def test_formats_a_pbx_sends() -> None:
    assert UK.normalize("00442071230000") == "+442071230000"
    assert UK.normalize("020 7123-0000") == "+442071230000"
    assert UK.normalize("(020) 7123.0000") == "+442071230000"
    assert UK.normalize("+44 20 7123 0000") == "+442071230000"
    assert NANP.normalize("1 (202) 555-0100") == "+12025550100"
    assert NANP.normalize("011 44 20 7123 0000") == "+442071230000"


def test_phone_context() -> None:
    # RFC 3966 §5.1.5: the context's global digits prefix the local number
    assert UK.number_of_uri("tel:7123-0000;phone-context=+44-20") == "+442071230000"
    assert Dialplan().number_of_uri("sip:71230000;phone-context=+4420@pbx") == "+442071230000"
    # a domain context: read with the dialplan (national number here)
    assert UK.number_of_uri("tel:02071230000;phone-context=example.com") == "+442071230000"


def test_without_country_code_national_numbers_are_refused() -> None:
    with pytest.raises(E164Error):
        Dialplan().normalize("02071230000")
    assert Dialplan().number("02071230000") is None
    assert UK.number("7123") is None            # a subscriber number alone: unknown area
    assert UK.number("alice") is None
    assert UK.number_of_uri("sip:alice@x") is None
    assert UK.number_of_uri("mailto:a@b") is None


def test_bad_dialplans() -> None:
    for kw in ({"country_code": "0"}, {"country_code": "4444"}, {"country_code": "4a"},
               {"international_prefix": ""}, {"national_prefix": "x"},
               {"national_prefix": "00", "international_prefix": "00"}):
        with pytest.raises(DialplanError):
            Dialplan(**kw)  # type: ignore[arg-type]


def test_caller_from_pai_then_from() -> None:
    h = {"P-Asserted-Identity": '"Bob" <sip:bob@x>, <tel:+1-202-555-0100>',
         "From": "<sip:+442071230000@x>;tag=1"}
    assert UK.caller(h.get) == "+12025550100"
    h = {"From": '"A" <sip:02071230000@pbx>;tag=9'}
    assert UK.caller(h.get) == "+442071230000"
    h = {"P-Asserted-Identity": "<<<", "From": "<sip:anonymous@anonymous.invalid>;tag=1"}
    assert UK.caller(h.get) is None


def test_routing_decision_uses_the_dialplan() -> None:
    """Issue 14: a national-format number was `route_pstn_not-e164` and never got a route."""
    route = Route(number="+442071230000", routes=("sip:b.example.net",), ticket="t",
                  ticket_expires=10_000.0, expires=10_000.0, learned_from_node="n",
                  learned_from_domain="b.example.net", validated_at=0.0, last_used=None,
                  failures=0)
    cache = RouteCache([route])
    d = decide("internal", "sip:00442071230000@pbx", NumberSet(), cache, 1.0, 10.0, UK)
    assert (d.kind, d.number) == ("federation", "+442071230000")
    d = decide("internal", "sip:02071230000@pbx", NumberSet(), cache, 1.0, 10.0, UK)
    assert (d.kind, d.number) == ("federation", "+442071230000")
    d = decide("internal", "sip:02071230000@pbx", NumberSet(), cache, 1.0, 10.0)
    assert (d.kind, d.reason) == ("pstn", "not-e164")


_digits = st.text("0123456789", min_size=4, max_size=10).filter(lambda s: s[0] != "0")


@given(_digits, st.sampled_from(["", " ", "-", "."]))
def test_national_and_international_forms_agree(rest: str, sep: str) -> None:
    spaced = sep.join(rest)
    national = UK.normalize("0" + spaced)
    assert national == "+44" + rest
    assert UK.normalize("0044" + spaced) == national
    assert UK.normalize("+44" + spaced) == national
    assert UK.normalize(national) == national   # idempotent


@given(st.text(max_size=30))
def test_any_text_normalises_or_raises_e164error(text: str) -> None:
    try:
        n = UK.normalize(text)
    except E164Error:
        return
    assert n.startswith("+") and n[1:].isdigit() and n[1] != "0" and len(n) <= 16


def _cfg(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text('provider: {name: a, domain: a.example.net, vservice: "0000000000000001"}\n'
                 "database: a.db\n" + extra)
    return p


def test_config_section(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, "dialplan: {country_code: 44}\n"))
    assert cfg.dialplan == UK
    cfg = load_config(_cfg(tmp_path, ""))
    assert cfg.dialplan == Dialplan()
    cfg = load_config(_cfg(tmp_path, 'dialplan: {country_code: "1", national_prefix: "1",'
                                     ' international_prefix: "011"}\n'))
    assert cfg.dialplan == NANP
    with pytest.raises(ConfigError, match=r"dialplan\.country_code"):
        load_config(_cfg(tmp_path, "dialplan: {country_code: uk}\n"))
    with pytest.raises(ConfigError, match="dialplan"):
        load_config(_cfg(tmp_path, "dialplan: {country_code: '0'}\n"))
    with pytest.raises(ConfigError, match=r"dialplan\.area"):
        load_config(_cfg(tmp_path, "dialplan: {area: 20}\n"))
