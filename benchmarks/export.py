"""How long a 30-slide deck takes to draw in each format and theme, beside what the libraries
underneath take for the same number of bare pages (the floor), measured in the same run.

    uv run python benchmarks/export.py [--slides 30] [--repeat 5]

Drawing is in-process (no server, no database): what an export costs the API process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import statistics
import time
from collections.abc import Callable

from pptx import Presentation
from reportlab.pdfgen.canvas import Canvas

from presto_deck.domain.content import DeckBrief, SlideContent
from presto_deck.infrastructure.export.html import deck_to_html
from presto_deck.infrastructure.export.pdf import deck_to_pdf
from presto_deck.infrastructure.export.pptx import deck_to_pptx
from presto_deck.infrastructure.themes import load_themes
from presto_deck.infrastructure.writers.offline import OfflineWriter
from presto_deck.infrastructure.writers.rendering import ThemeRenderer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    contents = asyncio.run(_written(args.slides))
    themes = load_themes()
    renderer = ThemeRenderer(themes)

    rows: list[tuple[str, str, float]] = [
        ("floor", "python-pptx, bare slides", _median(lambda: _bare_pptx(args.slides), args)),
        ("floor", "reportlab, one line a page", _median(lambda: _bare_pdf(args.slides), args)),
    ]
    for name, theme in themes.items():
        html = [(renderer.render(content, name), content.notes) for content in contents]
        drawings = {
            "pptx": functools.partial(deck_to_pptx, "Deck", contents, theme),
            "pdf": functools.partial(deck_to_pdf, "Deck", contents, theme),
            "html": functools.partial(deck_to_html, "Deck", html, theme),
        }
        rows += [(kind, name, _median(draw, args)) for kind, draw in drawings.items()]

    print(f"{args.slides} slides, median of {args.repeat} runs")
    print(f"{'format':<8}{'theme':<28}{'ms':>8}")
    for kind, what, seconds in rows:
        print(f"{kind:<8}{what:<28}{seconds * 1000:>8.2f}")


async def _written(count: int) -> list[SlideContent]:
    writer = OfflineWriter(slide_delay_ms=0)
    brief = DeckBrief(prompt="Quarterly review of the tidal energy pilot", slide_count=count)
    plan = await writer.plan(brief)
    return [await writer.write_slide(brief, plan, index) for index in range(len(plan.slides))]


def _median(draw: Callable[[], object], args: argparse.Namespace) -> float:
    draw()  # warm: imports, font metrics, the stylesheet
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        draw()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _bare_pptx(count: int) -> bytes:
    presentation = Presentation()
    for _ in range(count):
        presentation.slides.add_slide(presentation.slide_layouts[6])
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def _bare_pdf(count: int) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(960, 540))
    for number in range(count):
        canvas.drawString(72, 72, f"Page {number}")
        canvas.showPage()
    canvas.save()
    return out.getvalue()


if __name__ == "__main__":
    main()
