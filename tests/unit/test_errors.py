"""What the API sends when it refuses: WebSocket close reasons fit a close frame whatever text
they are built from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from presto_deck.api.errors import close_reason

#: RFC 6455 §5.5: a close frame's payload is at most 125 bytes, two of them the code.
MAX_REASON_BYTES = 123


def test_a_short_reason_is_sent_as_it_is() -> None:
    assert close_reason("deck not found") == "deck not found"


def test_a_reason_of_exactly_123_bytes_is_sent_as_it_is() -> None:
    text = "é" * 61 + "x"  # 122 + 1 bytes

    assert close_reason(text) == text


def test_a_long_reason_is_cut_to_123_bytes_and_says_so() -> None:
    reason = close_reason("invalid token: " + "x" * 500)

    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert reason.startswith("invalid token: xxx")
    assert reason.endswith("…")


def test_a_cut_never_splits_a_multi_byte_character() -> None:
    for prefix in range(4):  # moves the cut across every byte of the characters
        reason = close_reason("x" * prefix + "€" * 100)

        assert reason.rstrip("…").strip("x") == "€" * ((120 - prefix) // 3)


def test_a_lone_surrogate_is_replaced() -> None:
    assert close_reason("bad \ud800 token") == "bad ? token"


#: Any characters, lone surrogates included (``st.characters()`` leaves them out).
_any_text = st.text(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)))


@given(_any_text)
def test_any_reason_fits_a_close_frame_as_valid_utf8(text: str) -> None:
    assert len(close_reason(text).encode("utf-8")) <= MAX_REASON_BYTES
