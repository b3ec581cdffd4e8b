"""The built-in themes, as every process reads them."""

from __future__ import annotations

from presto_deck.infrastructure.themes import load_themes

THEME_BOOK = load_themes()
#: The built-in themes' names.
THEMES = tuple(THEME_BOOK)
