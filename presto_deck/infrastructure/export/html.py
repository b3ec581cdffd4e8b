"""One self-contained HTML file of a deck: the slides as the page shows them (the same stored,
sanitized HTML, the page's own slide stylesheet and the deck theme's, inlined), presented full
screen with the arrow keys, notes on a key. Nothing in it reaches the network."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from html import escape
from importlib.resources import files

from presto_deck.domain.deck import Deck, Slide
from presto_deck.domain.themes import Theme, ThemeBook
from presto_deck.infrastructure.writers.stylesheet import theme_stylesheet

_SLIDE_STYLES_MARKER = "/* -- slides --"

_SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="Presto-Deck">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; background: #111827; font-family: system-ui, sans-serif; }}
.deck {{ height: 100%; display: flex; flex-direction: column; }}
.stage {{ flex: 1; display: flex; align-items: center; justify-content: center; }}
.stage {{ min-height: 0; }}
.stage .slide-frame {{ width: min(100vw, calc((100vh - 2.5rem) * 16 / 9)); }}
.deck:has(.notes:not([hidden])) .stage .slide-frame {{
  width: min(100vw, calc((100vh - 2.5rem - 25vh) * 16 / 9)); }}
.slide-frame[hidden] {{ display: none; }}
.bar {{ display: flex; justify-content: space-between; padding: .5rem 1.5rem; color: #9ca3af;
  font-size: .85rem; }}
.notes {{ white-space: pre-wrap; color: #e5e7eb; background: #1f2937; padding: .75rem 1.5rem;
  max-height: 25vh; overflow: auto; }}
{styles}
</style></head>
<body><div class="deck">
<div class="stage">
{slides}
</div>
<div class="bar"><span>{title}</span><span id="counter"></span>
<span>&larr; &rarr; to move &middot; N for notes</span></div>
<div class="notes" id="notes" hidden></div>
</div>
<script>
const frames = [...document.querySelectorAll(".slide-frame")];
const notes = {notes};
let current = 0;
function show(index) {{
  if (!frames.length) return;
  current = Math.max(0, Math.min(frames.length - 1, index));
  frames.forEach((frame, i) => (frame.hidden = i !== current));
  document.getElementById("counter").textContent = `${{current + 1}} / ${{frames.length}}`;
  document.getElementById("notes").textContent = notes[current] || "No presenter notes.";
}}
document.addEventListener("keydown", (event) => {{
  const steps = {{ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1, ArrowLeft: -1, ArrowUp: -1,
    PageUp: -1}};
  if (event.key in steps) show(current + steps[event.key]);
  else if (event.key === "Home") show(0);
  else if (event.key === "End") show(frames.length - 1);
  else if (event.key === "n" || event.key === "N") {{
    const panel = document.getElementById("notes");
    panel.hidden = !panel.hidden;
  }} else if (event.key === "f" || event.key === "F") {{
    document.documentElement.requestFullscreen?.();
  }} else return;
  event.preventDefault();
}});
show(0);
</script>
</body></html>
"""


def deck_to_html(title: str, slides: Sequence[tuple[str, str | None]], theme: Theme) -> bytes:
    """``slides``: each slide's stored (sanitized) HTML and its presenter notes."""
    frames = "\n".join(
        f'<div class="slide-frame"{"" if i == 0 else " hidden"}>{html}</div>'
        for i, (html, _) in enumerate(slides)
    )
    notes = [note or "" for _, note in slides]
    page = _SHELL.format(
        title=escape(title),
        # The deck's theme also as every slide's: a slide drawn in a theme since removed shows
        # in the one the deck is exported in.
        styles=_slide_styles() + "\n" + theme_stylesheet([theme], fallback=theme),
        slides=frames,
        # JSON in a script: no "<" at all, so no "</script>" or "<!--" can end or bend it.
        notes=json.dumps(notes).replace("<", "\\u003c"),
    )
    return page.encode("utf-8")


@cache
def _slide_styles() -> str:
    """The part of the page's stylesheet that draws slides."""
    stylesheet = files("presto_deck.api").joinpath("static/app.css").read_text(encoding="utf-8")
    return stylesheet[stylesheet.index(_SLIDE_STYLES_MARKER) :]


class HtmlExporter:
    media_type = "text/html"
    extension = "html"

    def __init__(self, themes: ThemeBook) -> None:
        self._themes = themes

    def export(self, deck: Deck, slides: Sequence[Slide]) -> bytes:
        return deck_to_html(
            deck.title,
            [(s.html_content, s.presenter_notes) for s in slides],
            self._themes.of(deck.brief.theme),
        )
