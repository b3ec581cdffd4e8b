"""Reading themes from their files: the built-in ones in the package, then a team's own from the
folder ``PRESTO_THEMES_DIR`` names (a file named like a built-in theme replaces it)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import get_args

import msgspec
from loguru import logger

from presto_deck.domain.themes import (
    COLOUR_PATTERN,
    FONT_NAME_PATTERN,
    WORDS_PATTERN,
    Bullet,
    Generic,
    Theme,
    ThemeBook,
    TitleCase,
    TitleRule,
)
from presto_deck.settings import SettingsError

__all__ = ["load_themes"]

#: A theme's name is its file's: what a CSS class and a URL can carry as they are.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_MAX_FILE_BYTES = 64 * 1024
_SETTING = "PRESTO_THEMES_DIR"
#: The fields that take one of a few words, and those words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "$.bullet": get_args(Bullet),
    "$.title_rule": get_args(TitleRule),
    "$.title_case": get_args(TitleCase),
    "$.fonts.heading_generic": get_args(Generic),
    "$.fonts.body_generic": get_args(Generic),
}
#: What a theme file's author is told instead of a pattern.
_PATTERNS = {
    COLOUR_PATTERN: "a colour written #rrggbb",
    FONT_NAME_PATTERN: "a font name of letters, digits, spaces, hyphens",
    WORDS_PATTERN: "words without control characters",
}


def load_themes(folder: str | None = None) -> ThemeBook:
    """Every theme, or a ``SettingsError`` that names the file and what is wrong with it."""
    themes = {theme.name: theme for theme in _read_all(files("presto_deck").joinpath("themes"))}
    if folder:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise SettingsError(f"{_SETTING}: {folder} is not a folder")
        own = {theme.name: theme for theme in _read_all(path, where=f"{folder}/")}
        replaced = sorted(own.keys() & themes.keys())
        themes |= own
        logger.info(
            "themes from {}: {}{}",
            folder,
            ", ".join(sorted(own)) or "none",
            f" (replacing the built-in {', '.join(replaced)})" if replaced else "",
        )
    return ThemeBook(themes)


def _read_all(folder: Traversable, *, where: str = "") -> Iterable[Theme]:
    seen: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        stem, dot, extension = entry.name.rpartition(".")
        if entry.name.startswith(".") or not entry.is_file():
            continue  # hidden files (editors', macOS's ._ files) and folders
        shown = f"{_SETTING}: {where}{entry.name}"
        if not dot or extension.lower() not in ("toml", "json"):
            logger.warning("{}: not a theme (a theme is a .toml or .json file); ignored", shown)
            continue
        if not _NAME.fullmatch(stem):
            raise SettingsError(
                f"{shown}: a theme's file name must be lower-case letters, digits and "
                "hyphens (at most 40), e.g. acme-blue.toml"
            )
        if stem in seen:
            raise SettingsError(f"{shown}: the theme {stem} is also in {seen[stem]}; keep one")
        seen[stem] = entry.name
        yield _read(entry, stem, extension.lower(), shown)


def _read(entry: Traversable, name: str, extension: str, shown: str) -> Theme:
    too_large = SettingsError(f"{shown}: larger than {_MAX_FILE_BYTES // 1024} KiB")
    try:
        if isinstance(entry, Path) and entry.stat().st_size > _MAX_FILE_BYTES:
            raise too_large  # before reading it: it may be anything a link points to
        with entry.open("rb") as file:
            raw = file.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise too_large
    decode = msgspec.toml.decode if extension == "toml" else msgspec.json.decode
    try:
        theme = decode(raw, type=Theme)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{shown}: {_explained(str(exc))}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{shown}: not valid {extension.upper()} (UTF-8): {exc}") from None
    except RecursionError:
        raise SettingsError(f"{shown}: nested too deeply to be a theme") from None
    return msgspec.structs.replace(theme, name=name)


def _explained(problem: str) -> str:
    for pattern, meaning in _PATTERNS.items():
        problem = problem.replace(f"`str` matching regex {pattern!r}", meaning)
    where = problem.rpartition(" - at `")[2].rstrip("`")
    if problem.startswith("Invalid enum value") and where in _CHOICES:
        problem += f" (one of: {', '.join(_CHOICES[where])})"
    return problem
