"""The PDF draws the Latin, Greek and Cyrillic alphabets whole (with Noto Sans where the
standard fonts stop), and accents typed apart from their letters as one character."""

from __future__ import annotations

import io

import pypdfium2 as pdfium
from pypdf import PdfReader

from presto_deck.domain.content import SlideContent
from presto_deck.infrastructure.export.pdf import deck_to_pdf
from tests.support.themes import THEME_BOOK

_WORDS = ["Łódź", "Čeština", "Tiếng Việt", "Ελληνικά", "Русский", "été"]


def test_letters_past_western_europe_are_drawn_and_kept_as_text() -> None:
    slide = SlideContent(title="Scripts", bullets=[*_WORDS[:5], "e\u0301te\u0301"])

    pdf = deck_to_pdf("Scripts", [slide], THEME_BOOK["default"])

    text = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    for word in _WORDS:
        assert word.replace(" ", "") in text.replace(" ", ""), word
    assert b"NotoSans" in pdf  # embedded, as the subset of the glyphs used
    # Drawn, not blank: each bullet's line has ink beside its mark.
    page = pdfium.PdfDocument(pdf)[0].render(scale=1).to_pil().convert("L")
    inked_rows = {
        y for y in range(page.height) for x in range(90, 300, 2) if page.getpixel((x, y)) < 128
    }
    assert len(inked_rows) > 6 * 12
