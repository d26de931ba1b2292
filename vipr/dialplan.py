"""Number normalisation and caller identity (DESIGN §11). Pure code.

What a PBX or an edge sends is turned into E.164 before routing or storing: a global number
("+44 20 7123-0000"), the international prefix ("00442071230000"; "011..." with NANP's), a
national number with the national prefix ("020 7123 0000" with country code 44), or a local
number with `;phone-context=+44` (RFC 3966 §5.1.5: the context's digits are the number's
prefix). Visual separators are those of RFC 3966 §5.1.1 ("-", ".", "(", ")") plus spaces.

    dp = Dialplan(country_code="44")
    dp.normalize("020 7123 0000")          # "+442071230000"
    dp.number_of_uri("sip:02071230000@pbx") # "+442071230000"
    dp.caller(headers.get)                   # P-Asserted-Identity, else From
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vipr.e164 import E164Error, normalize_e164

if TYPE_CHECKING:
    from vipr.proxy.sip.uri import URI

__all__ = ["DEFAULT_DIALPLAN", "Dialplan", "DialplanError"]

_SEPARATORS = str.maketrans("", "", " -.()")


class DialplanError(ValueError):
    """A dialplan setting is not usable (bad country code or prefix)."""


@dataclass(frozen=True, slots=True)
class Dialplan:
    """country_code: digits without "+" (None: national numbers are not accepted);
    national_prefix: trunk prefix of national numbers ("0"; "1" in NANP; "" for none);
    international_prefix: the exit code ("00"; "011" in NANP)."""

    country_code: str | None = None
    national_prefix: str = "0"
    international_prefix: str = "00"

    def __post_init__(self) -> None:
        cc = self.country_code
        if cc is not None and not (cc.isascii() and cc.isdigit() and 1 <= len(cc) <= 3
                                   and cc[0] != "0"):
            raise DialplanError(f"country_code {cc!r}: 1 to 3 digits, not starting with 0")
        for name in ("national_prefix", "international_prefix"):
            v = getattr(self, name)
            if not (v == "" or (v.isascii() and v.isdigit() and len(v) <= 4)):
                raise DialplanError(f"{name} {v!r}: up to 4 digits")
        if not self.international_prefix:
            raise DialplanError("international_prefix must not be empty")
        if self.national_prefix and self.international_prefix.startswith(self.national_prefix) \
                and self.national_prefix == self.international_prefix:
            raise DialplanError("national_prefix and international_prefix must differ")

    def normalize(self, text: str, phone_context: str | None = None) -> str:
        """`text` as "+digits"; raise `E164Error` saying what is wrong."""
        if not isinstance(text, str):
            raise E164Error(f"expected a string, got {type(text).__name__}")
        t = text.strip().translate(_SEPARATORS)
        if t.startswith("+"):
            return normalize_e164(t)
        if not t or not (t.isascii() and t.isdigit()):
            raise E164Error(f"{text!r}: not a telephone number")
        if phone_context is not None:
            ctx = phone_context.strip().translate(_SEPARATORS)
            if ctx.startswith("+"):
                # RFC 3966 §5.1.5: a global-number-digits context prefixes the local number
                return normalize_e164(ctx + t)
            # a domain-name context says nothing about digits: read it as dialled locally
        ip = self.international_prefix
        if t.startswith(ip) and len(t) > len(ip):
            return normalize_e164("+" + t[len(ip):])
        np = self.national_prefix
        if self.country_code is not None and t.startswith(np) and len(t) > len(np):
            return normalize_e164("+" + self.country_code + t[len(np):])
        raise E164Error(f"{text!r}: neither international nor national format")

    def number(self, text: str, phone_context: str | None = None) -> str | None:
        """`normalize`, or None when `text` is no number."""
        try:
            return self.normalize(text, phone_context)
        except E164Error:
            return None

    def number_of_uri(self, uri: URI | str) -> str | None:
        """The E.164 number a Request-URI (or To/From/PAI URI) names, or None.

        `tel:` (RFC 3966) or the user part of a sip/sips URI; `;phone-context` is honoured,
        other user parameters (`;isub`, `;ext`) ignored."""
        # imported here: the config (which holds a Dialplan) is loaded before the SIP stack
        from vipr.proxy.sip.errors import SipParseError
        from vipr.proxy.sip.uri import parse_uri, unescape

        try:
            u = parse_uri(uri) if isinstance(uri, str) else uri
        except SipParseError:
            return None
        if u.scheme == "tel":
            text = u.user if u.user is not None else (u.opaque or "")
            ctx = u.params.get("phone-context")
        elif u.is_sip:
            text = u.user or ""
            ctx = None
        else:
            return None
        user, _, params = unescape(text).partition(";")
        for p in params.split(";") if params else ():
            k, _, v = p.partition("=")
            if k.strip().lower() == "phone-context" and v:
                ctx = v
        return self.number(user, ctx)

    def caller(self, get: Callable[[str], str | None]) -> str | None:
        """Caller identity: P-Asserted-Identity (RFC 3325 §9.1), else From (DESIGN §11).

        `get` is `Headers.get`. A PAI header may list a sip and a tel URI: the first one that
        names a number wins."""
        from vipr.proxy.sip.errors import SipParseError
        from vipr.proxy.sip.headers import parse_name_addr, parse_name_addr_list

        pai = get("P-Asserted-Identity")
        if pai:
            try:
                ids = parse_name_addr_list(pai)
            except SipParseError:
                ids = []
            for na in ids:
                n = self.number_of_uri(na.uri)
                if n is not None:
                    return n
        frm = get("From")
        if not frm:
            return None
        try:
            return self.number_of_uri(parse_name_addr(frm).uri)
        except SipParseError:
            return None


DEFAULT_DIALPLAN = Dialplan()
