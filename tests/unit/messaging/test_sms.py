"""SMS encoding, segment counting and the per-message segment cap."""
from __future__ import annotations

import pytest

from chalicelib.domain.messaging.sms import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    check_segments,
    encoding_of,
    measure,
)


def test_the_default_alphabet_has_127_printable_characters_and_the_extension_ten():
    # 128 code points in GSM 03.38, minus the escape that introduces the extension table.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize("text, expected", [
    ("Hello, your order #123 has shipped!", GSM7),
    ("Café à 5€ — no", UCS2),  # the em dash is not GSM-7
    ("Café à 5€", GSM7),  # é, à and € are
    ("Grüße aus Köln", GSM7),
    ("Ciao 😀", UCS2),
    ("It’s here", UCS2),  # a curly apostrophe
    ("It's here", GSM7),
    ("Ça va", GSM7),
    ("ça va", UCS2),  # only the capital Ç sits in the default alphabet
    ("", GSM7),
])
def test_encoding(text, expected):
    assert encoding_of(text) == expected


@pytest.mark.parametrize("length, segments", [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)])
def test_gsm7_segments_are_160_then_153(length, segments):
    measured = measure("a" * length)
    assert (measured.encoding, measured.units, measured.segments) == (GSM7, length, segments)


@pytest.mark.parametrize("length, segments", [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_ucs2_segments_are_70_then_67(length, segments):
    measured = measure("ж" * length)
    assert (measured.encoding, measured.units, measured.segments) == (UCS2, length, segments)


def test_extension_characters_count_twice():
    assert measure("€" * 80).units == 160
    assert measure("€" * 80).segments == 1
    assert measure("€" * 80 + "a").segments == 2
    assert measure("[x]").units == 5


def test_an_escape_pair_is_never_split_across_segments():
    # 152 plain septets then a euro: 154 septets would fit 153 + 1 by count, but the pair moves
    # whole to the next segment; 161+ septets in total make it concatenated.
    text = "a" * 152 + "€" + "a" * 10
    measured = measure(text)
    assert measured.units == 164
    assert measured.segments == 2
    # Exactly filling two segments by count, but the pair straddles the first boundary: three.
    text = "a" * 152 + "€" + "a" * 152
    assert measure(text).units == 306
    assert measure(text).segments == 3


def test_emoji_count_as_two_ucs2_units_and_are_not_split():
    assert measure("😀" * 35).units == 70
    assert measure("😀" * 35).segments == 1
    text = "ж" * 66 + "😀" + "ж" * 66  # the emoji would straddle the first 67-unit boundary
    assert measure(text).units == 134
    assert measure(text).segments == 3


def test_empty_text_is_zero_segments_and_refused():
    assert measure("").segments == 0
    verdict = check_segments("")
    assert not verdict.ok and verdict.code == "sms_empty"


def test_the_cap_accepts_a_text_within_it():
    verdict = check_segments("a" * 459, max_segments=3)
    assert verdict.ok and verdict.reason is None and verdict.length.segments == 3


def test_the_cap_refuses_with_the_characters_that_forced_ucs2():
    text = "Your basket is waiting ’ " + "a" * 180  # 206 units in UCS-2: 4 segments; in GSM-7: 2
    verdict = check_segments(text, max_segments=3)
    assert not verdict.ok
    assert verdict.code == "sms_too_long"
    assert verdict.length.forcing_ucs2 == ("’",)
    assert "needs 4 segments, more than the limit of 3" in verdict.reason
    assert "'’' force UCS-2; without them it would be 2 segments" in verdict.reason


def test_the_cap_refuses_a_long_gsm7_text_without_blaming_characters():
    verdict = check_segments("a" * 460, max_segments=3)
    assert not verdict.ok and "4 segments" in verdict.reason and "force UCS-2" not in verdict.reason
