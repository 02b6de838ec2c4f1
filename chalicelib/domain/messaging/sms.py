"""SMS length: which encoding a text needs, how many segments it costs, and the per-message cap.

A text made only of the GSM 03.38 default alphabet travels as GSM-7: 160 septets in one
message, 153 per segment once concatenated (the user data header takes 7). Characters of the
extension table (`^ { } [ ] ~ \\ | €` and form feed) are sent as an escape plus a character,
two septets, and the pair is never split across segments. Any other character (an emoji, a
curly quote, most accented capitals) switches the whole message to UCS-2: 70 UTF-16 code units
in one message, 67 per segment, a surrogate pair (an emoji) counting as two and never split.
Every segment is billed as one SMS, so a single stray character can triple the cost: the
verdict names the characters that forced UCS-2.

National language shift tables (Turkish, Spanish, Portuguese…) are not used: carriers
support them unevenly, and a text that needs them is counted as UCS-2, the safe upper bound.
"""
from __future__ import annotations

from dataclasses import dataclass

GSM7, UCS2 = "GSM-7", "UCS-2"

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {GSM7: 160, UCS2: 70}
CONCATENATED = {GSM7: 153, UCS2: 67}
DEFAULT_MAX_SEGMENTS = 3


def encoding_of(text: str) -> str:
    return GSM7 if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text) else UCS2


def _units(ch: str, encoding: str) -> int:
    if encoding == GSM7:
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1  # outside the BMP: a UTF-16 surrogate pair


@dataclass(frozen=True)
class SmsLength:
    encoding: str
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    forcing_ucs2: tuple[str, ...]  # the characters outside GSM-7, in order of appearance


def measure(text: str) -> SmsLength:
    encoding = encoding_of(text)
    units = [_units(ch, encoding) for ch in text]
    total = sum(units)
    if total <= SINGLE[encoding]:
        segments = 1 if text else 0
    else:
        # Fill each segment greedily; a two-unit character that does not fit starts the next.
        capacity, segments, used = CONCATENATED[encoding], 1, 0
        for size in units:
            if used + size > capacity:
                segments, used = segments + 1, 0
            used += size
    forcing = tuple(dict.fromkeys(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION))
    return SmsLength(encoding, total, segments, forcing)


@dataclass(frozen=True)
class SegmentVerdict:
    ok: bool
    length: SmsLength
    code: str | None = None
    reason: str | None = None


def check_segments(text: str, max_segments: int = DEFAULT_MAX_SEGMENTS) -> SegmentVerdict:
    """Whether the text fits the per-message segment cap, with a reason a marketer can act on."""
    length = measure(text)
    if not text:
        return SegmentVerdict(False, length, "sms_empty", "The SMS is empty.")
    if length.segments <= max_segments:
        return SegmentVerdict(True, length)
    reason = (f"This SMS needs {length.segments} segments, more than the limit of {max_segments} "
              f"({length.units} {'characters' if length.encoding == GSM7 else 'UCS-2 units'} in {length.encoding}).")
    if length.forcing_ucs2:
        shown = " ".join(repr(ch) for ch in length.forcing_ucs2[:5])
        plain = measure("".join(ch for ch in text if ch not in length.forcing_ucs2))
        reason += (f" The characters {shown} force UCS-2; without them it would be "
                   f"{plain.segments} segment{'s' if plain.segments != 1 else ''}.")
    return SegmentVerdict(False, length, "sms_too_long", reason)
