"""SDP (RFC 4566) as far as the test network needs it: parse, filter, summarise, answer.

Pure functions, no I/O. The PSTN simulator narrows an offer to what a PSTN leg carries
(PCMU/PCMA audio only, `narrowband_offer`) and rebuilds the caller's answer from the callee's
(`narrowband_answer`, one m-line per offered m-line, RFC 3264 §6). The phones build wideband
offers (`phone_offer`) and answer by intersecting with what they support (`answer_for`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = [
    "NARROWBAND",
    "Media",
    "Sdp",
    "SdpError",
    "SdpSummary",
    "answer_for",
    "narrowband_answer",
    "narrowband_offer",
    "parse_sdp",
    "phone_offer",
    "summarize",
]

NARROWBAND = frozenset({"PCMU", "PCMA"})   # G.711 µ-law / A-law, 8 kHz: what the PSTN carries
WIDEBAND = frozenset({"OPUS", "G722", "AMR-WB", "SILK", "G7221"})

# RFC 3551 §6 Table 4/5: static payload types (the ones a phone may offer without rtpmap)
STATIC_PT = {"0": "PCMU", "3": "GSM", "4": "G723", "8": "PCMA", "9": "G722", "18": "G729",
             "26": "JPEG", "31": "H261", "34": "H263"}


class SdpError(ValueError):
    """The body is not a usable SDP session description."""


@dataclass
class Media:
    """One media description: the m= line and the lines after it (c=, b=, a=)."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    lines: list[str] = field(default_factory=list)

    def codec(self, fmt: str) -> str:
        """Encoding name of a payload type (rtpmap, else the static table), upper case."""
        for line in self.lines:
            if line.startswith(f"a=rtpmap:{fmt} "):
                return line.split(" ", 1)[1].split("/", 1)[0].strip().upper()
        return STATIC_PT.get(fmt, fmt).upper()

    def codecs(self) -> list[str]:
        """Encoding names in preference order (telephone-event etc. included)."""
        return [self.codec(f) for f in self.formats]

    def keep_formats(self, keep: list[str]) -> Media:
        """A copy with only the payload types in `keep`; their a=rtpmap/fmtp/rtcp-fb stay."""
        dropped = set(self.formats) - set(keep)
        lines = [ln for ln in self.lines if not _format_attr(ln, dropped)]
        return Media(self.kind, self.port, self.proto, list(keep), lines)

    def rejected(self) -> Media:
        """RFC 3264 §6: a declined stream: port 0, formats kept, no attributes."""
        return Media(self.kind, 0, self.proto, self.formats[:1] or ["0"], [])

    def text(self) -> list[str]:
        return [f"m={self.kind} {self.port} {self.proto} {' '.join(self.formats)}", *self.lines]


def _format_attr(line: str, formats: set[str]) -> bool:
    for attr in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
        if line.startswith(attr):
            return line[len(attr):].split(" ", 1)[0] in formats
    return False


@dataclass
class Sdp:
    """Session-level lines plus media descriptions, in order."""

    session: list[str]
    media: list[Media]

    def serialize(self) -> bytes:
        lines = list(self.session)
        for m in self.media:
            lines.extend(m.text())
        return ("\r\n".join(lines) + "\r\n").encode()


def parse_sdp(body: bytes | str) -> Sdp:
    """Split a body into session lines and media sections; SdpError when it is not SDP."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP must start with v=")
    session: list[str] = []
    media: list[Media] = []
    for ln in lines:
        if len(ln) < 2 or ln[1] != "=":
            raise SdpError(f"bad SDP line {ln[:40]!r}")
        if ln.startswith("m="):
            parts = ln[2:].split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"bad m= line {ln[:60]!r}")
            media.append(Media(parts[0], int(parts[1].split("/")[0]), parts[2], parts[3:]))
        elif media:
            media[-1].lines.append(ln)
        else:
            session.append(ln)
    return Sdp(session, media)


@dataclass(frozen=True)
class SdpSummary:
    """What a call ended up with: audio codecs (active streams), whether video is on."""

    audio: tuple[str, ...]
    video: bool

    @property
    def wideband(self) -> bool:
        return any(c in WIDEBAND for c in self.audio)

    @property
    def narrowband_only(self) -> bool:
        return bool(self.audio) and set(self.audio) <= NARROWBAND | {"TELEPHONE-EVENT"}

    def as_dict(self) -> dict[str, object]:
        return {"audio": list(self.audio), "video": self.video, "wideband": self.wideband}

    def __str__(self) -> str:
        codecs = ",".join(c.lower() for c in self.audio if c != "TELEPHONE-EVENT") or "no audio"
        return f"{codecs}{' + video' if self.video else ''}"


def summarize(body: bytes | str) -> SdpSummary:
    """Codecs of the active audio streams and whether an active video stream is present."""
    sdp = parse_sdp(body)
    audio: list[str] = []
    video = False
    for m in sdp.media:
        if m.port == 0:
            continue
        if m.kind == "audio":
            audio.extend(c for c in m.codecs() if c not in audio)
        elif m.kind == "video":
            video = True
    return SdpSummary(tuple(audio), video)


def narrowband_offer(offer: bytes | str) -> tuple[bytes, list[int]]:
    """What the PSTN leg offers: audio streams reduced to PCMU/PCMA, everything else gone.

    Returns the new offer and the indexes (in the original) of the m-lines kept, for
    `narrowband_answer`. SdpError when no audio stream with PCMU or PCMA is left (the PSTN
    cannot carry the call: 488).
    """
    sdp = parse_sdp(offer)
    kept: list[int] = []
    media: list[Media] = []
    for i, m in enumerate(sdp.media):
        if m.kind != "audio" or m.port == 0:
            continue
        fmts = [f for f in m.formats if m.codec(f) in NARROWBAND]
        if fmts:
            kept.append(i)
            media.append(m.keep_formats(fmts))
    if not media:
        raise SdpError("no PCMU/PCMA audio stream in the offer")
    session = [ln for ln in sdp.session if not ln.startswith(("b=", "a=group:"))]
    return Sdp(session, media).serialize(), kept


def narrowband_answer(answer: bytes | str, original_offer: bytes | str, kept: list[int]) -> bytes:
    """The caller's answer: one m-line per m-line it offered (RFC 3264 §6); the kept ones from
    the callee's answer, narrowed to PCMU/PCMA again, the others declined (port 0)."""
    ans = parse_sdp(answer)
    off = parse_sdp(original_offer)
    media: list[Media] = []
    for i, m in enumerate(off.media):
        if i in kept and kept.index(i) < len(ans.media):
            a = ans.media[kept.index(i)]
            fmts = [f for f in a.formats if a.codec(f) in NARROWBAND]
            media.append(a.keep_formats(fmts) if fmts and a.port else a.rejected())
        else:
            media.append(m.rejected())
    session = [ln for ln in ans.session if not ln.startswith(("b=", "a=group:"))]
    return Sdp(session, media).serialize()


# ---------------------------------------------------------------------- phones

# (payload type, rtpmap, fmtp or "")
_PHONE_AUDIO = [
    ("111", "opus/48000/2", "minptime=10;useinbandfec=1"),
    ("9", "G722/8000", ""),
    ("0", "PCMU/8000", ""),
    ("8", "PCMA/8000", ""),
    ("101", "telephone-event/8000", "0-16"),
]
_PHONE_VIDEO = [
    ("96", "H264/90000", "profile-level-id=42e01f;packetization-mode=1"),
    ("97", "VP8/90000", ""),
]
PHONE_CODECS = frozenset(r.split("/", 1)[0].upper() for _, r, _ in _PHONE_AUDIO + _PHONE_VIDEO)


def _session(host: str) -> list[str]:
    af = "IP6" if ":" in host else "IP4"
    sid = secrets.randbelow(10**9)
    return ["v=0", f"o=- {sid} 1 IN {af} {host}", "s=-", f"c=IN {af} {host}", "t=0 0"]


def _media(kind: str, port: int, codecs: list[tuple[str, str, str]]) -> Media:
    lines: list[str] = []
    for pt, rtpmap, fmtp in codecs:
        lines.append(f"a=rtpmap:{pt} {rtpmap}")
        if fmtp:
            lines.append(f"a=fmtp:{pt} {fmtp}")
    lines.append("a=sendrecv")
    return Media(kind, port, "RTP/AVP", [pt for pt, _, _ in codecs], lines)


def phone_offer(host: str, *, audio_port: int = 40000, video: bool = True) -> bytes:
    """A wideband phone's offer: opus, G.722, PCMU, PCMA (+ DTMF) and H.264/VP8 video."""
    media = [_media("audio", audio_port, _PHONE_AUDIO)]
    if video:
        media.append(_media("video", audio_port + 2, _PHONE_VIDEO))
    return Sdp(_session(host), media).serialize()


def answer_for(offer: bytes | str, host: str, *, audio_port: int = 41000) -> bytes:
    """The phone's answer: per offered stream the codecs it supports, in the offer's order
    (RFC 3264 §6.1); streams with nothing in common are declined."""
    off = parse_sdp(offer)
    media: list[Media] = []
    for i, m in enumerate(off.media):
        fmts = [f for f in m.formats if m.codec(f) in PHONE_CODECS]
        if m.port == 0 or m.kind not in ("audio", "video") or not fmts:
            media.append(m.rejected())
            continue
        a = m.keep_formats(fmts)
        a.port = audio_port + 2 * i
        a.lines = [ln for ln in a.lines if not ln.startswith("a=send") and ln != "a=recvonly"]
        a.lines = [ln for ln in a.lines if not ln.startswith("c=")] + ["a=sendrecv"]
        media.append(a)
    return Sdp(_session(host), media).serialize()
