"""The built-in themes, as every process reads them."""

from __future__ import annotations

from presto_deck.infrastructure.themes import load_themes

THEME_BOOK = load_themes()
#: The built-in themes' names.
THEMES = tuple(THEME_BOOK)
#: A team's own theme, as a file in the folder ``PRESTO_THEMES_DIR`` names would hold it.
ACME_THEME = """
label = "Acme"
description = "Cream and brick red."
title_rule = "line"
bullet = "dash"
[colors]
background = "#fefce8"
ink = "#1c1917"
muted = "#57534e"
accent = "#b91c1c"
[fonts]
heading = ["Rockwell"]
heading_generic = "serif"
body = ["Gill Sans"]
"""
