"""Reading themes from their files: the built-in ones in the package, then a team's own from the
folder ``PRESTO_THEMES_DIR`` names (a file named like a built-in theme replaces it)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import msgspec

from presto_deck.domain.themes import Theme, ThemeBook
from presto_deck.settings import SettingsError

__all__ = ["load_themes"]

#: A theme's name is its file's: what a CSS class and a URL can carry as they are.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_MAX_FILE_BYTES = 64 * 1024
_SETTING = "PRESTO_THEMES_DIR"
#: What a theme file's author is told instead of a pattern.
_PATTERNS = {
    "'^#[0-9A-Fa-f]{6}$'": "a colour written #rrggbb",
    "'^[A-Za-z0-9][A-Za-z0-9 -]{0,47}$'": "a font name of letters, digits, spaces, hyphens",
}


def load_themes(folder: str | None = None) -> ThemeBook:
    """Every theme, or a ``SettingsError`` that names the file and what is wrong with it."""
    themes = {theme.name: theme for theme in _read_all(files("presto_deck").joinpath("themes"))}
    if folder:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise SettingsError(f"{_SETTING}: {folder} is not a folder")
        themes |= {theme.name: theme for theme in _read_all(path, where=f"{folder}/")}
    return ThemeBook(themes)


def _read_all(folder: Traversable, *, where: str = "") -> Iterable[Theme]:
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        stem, dot, extension = entry.name.rpartition(".")
        if not dot or extension not in ("toml", "json") or not entry.is_file():
            continue
        shown = f"{_SETTING}: {where}{entry.name}"
        if not _NAME.match(stem):
            raise SettingsError(
                f"{shown}: a theme's file name must be lower-case letters, digits and "
                "hyphens (at most 40), e.g. acme-blue.toml"
            )
        yield _read(entry, stem, extension, shown)


def _read(entry: Traversable, name: str, extension: str, shown: str) -> Theme:
    try:
        raw = entry.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise SettingsError(f"{shown}: larger than {_MAX_FILE_BYTES // 1024} KiB")
    decode = msgspec.toml.decode if extension == "toml" else msgspec.json.decode
    try:
        theme = decode(raw, type=Theme)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{shown}: {_explained(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise SettingsError(f"{shown}: not valid {extension.upper()}: {exc}") from None
    return msgspec.structs.replace(theme, name=name)


def _explained(problem: str) -> str:
    for pattern, meaning in _PATTERNS.items():
        problem = problem.replace(f"`str` matching regex {pattern}", meaning)
    return problem
