"""Sanitizing the markup a model writes, before it is stored or shown.

Everything goes through ``sanitize_html``: bleach is in maintenance mode, so it stays behind this
one function and can be replaced without touching callers. bleach's allowlists are what make the
output safe; the pre-strip of script-like elements only keeps their code from showing up as text.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterable
from typing import Any

import bleach
import tinycss2
from bleach.css_sanitizer import CSSSanitizer

__all__ = ["sanitize_html"]

_TAGS = frozenset(
    {
        "p", "br", "hr", "div", "span",
        "strong", "em", "b", "i", "u", "s", "mark", "small", "sub", "sup",
        "code", "pre", "blockquote",
        "ul", "ol", "li",
        "h1", "h2", "h3", "h4",
        "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
# No img: a model's image URLs are mostly invented, and a remote image is a tracking beacon.
_STYLED_TAGS = frozenset({"p", "div", "span", "li", "td", "th", "mark"})
_CLASSED_TAGS = frozenset({"span", "code", "pre"})
_PROTOCOLS = frozenset({"http", "https", "mailto"})
# What a browser ignores or drops in a URL before it looks for the scheme.
_URL_NOISE = re.compile(r"[\x00-\x20\x7f-\xa0`]|[^\x00-\x7f]|\s")
_URL_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")

_CSS_PROPERTIES = frozenset(
    {"color", "background-color", "font-weight", "font-style", "text-align", "text-decoration"}
)
# CSSSanitizer filters property names only, so values are checked here as well.
_FORBIDDEN_CSS = re.compile(
    r"url\s*\(|expression|@import|javascript|vbscript|behavior|binding|\\|/\*|\*/|<|>",
    re.IGNORECASE,
)
_CSS_VALUE_TOKENS = frozenset({"ident", "hash", "number", "percentage", "dimension", "whitespace"})
_CSS_VALUE_LITERALS = frozenset({",", "/"})
_CSS_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla"})

# A model's class names must not borrow the renderer's own (``slide…``, ``theme…``).
_CLASS_TOKEN = re.compile(r"(?!slide|theme)[a-z][a-z0-9_-]{0,39}\Z", re.IGNORECASE)

# Elements whose content is code, styling or foreign markup rather than slide text. bleach would
# strip their tags but keep their inner text, so a <script> would show up as visible JS.
_DROPPED_ELEMENTS = (
    "script", "style", "template", "noscript", "noembed", "noframes", "iframe", "xmp",
    "textarea", "title", "plaintext", "svg", "math",
)  # fmt: skip
# The name ends where the HTML tokenizer ends it; an unclosed element runs to the end, as in a
# browser. Backreferences honour IGNORECASE, so </SCRIPT> closes <script>.
_DROPPED_ELEMENT = re.compile(
    r"<(?P<tag>" + "|".join(_DROPPED_ELEMENTS) + r")(?=[\s/>]|\Z)"
    r".*?(?:</(?P=tag)(?=[\s/>]|\Z)[^>]*(?:>|\Z)|\Z)",
    re.IGNORECASE | re.DOTALL,
)
# Removing one element can join the pieces around it into another (<scr<script></script>ipt>);
# a few passes catch that, and whatever is left is still only text once bleach is done.
_MAX_DROP_PASSES = 8


# Text with no tag, no character reference and no character the HTML parser replaces or drops
# (controls, surrogates, noncharacters): all bleach would do to it is escape its ">".
_PLAIN_TEXT = re.compile(
    r"[^<&\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]*\Z"
)


def sanitize_html(markup: str) -> str:
    """Reduce markup from a model to the small, inert subset a slide may show."""
    if not markup:
        return ""
    if _PLAIN_TEXT.match(markup):  # most of what a model writes: not worth a parse
        return markup.replace(">", "&gt;")
    return _bleached(markup)


def _bleached(markup: str) -> str:
    return str(_cleaner().clean(_drop_script_like(markup)))


#: One Cleaner per thread: building one (its HTML parser) costs more than most cleanings, and a
#: Cleaner is not thread-safe, while sanitizing may run off the event loop.
_per_thread = threading.local()


def _cleaner() -> bleach.Cleaner:
    cleaner: bleach.Cleaner | None = getattr(_per_thread, "cleaner", None)
    if cleaner is None:
        style = _StrictStyle()
        cleaner = _per_thread.cleaner = bleach.Cleaner(
            tags=_TAGS,
            attributes=lambda tag, name, value: _allow_attribute(style, tag, name, value),
            protocols=_PROTOCOLS,
            strip=True,
            strip_comments=True,
            css_sanitizer=style,
        )
    return cleaner


def _drop_script_like(markup: str) -> str:
    for _ in range(_MAX_DROP_PASSES):
        stripped = _DROPPED_ELEMENT.sub("", markup)
        if stripped == markup:
            break
        markup = stripped
    return markup


def _allow_attribute(style: _StrictStyle, tag: str, name: str, value: str) -> bool:
    if name == "style":
        return tag in _STYLED_TAGS and bool(style.sanitize_css(value))
    if name == "class":
        tokens = value.split()
        return tag in _CLASSED_TAGS and bool(tokens) and all(map(_CLASS_TOKEN.match, tokens))
    if tag == "a":
        return name == "title" or (name == "href" and _is_allowed_url(value))
    return False


def _is_allowed_url(value: str) -> bool:
    """A second, browser-like look at a URL, decoding entities bleach may have left encoded."""
    url = html.unescape(html.unescape(value))
    url = _URL_NOISE.sub("", url).lower()
    scheme = _URL_SCHEME.match(url)
    if scheme:
        return scheme.group(1) in _PROTOCOLS
    return ":" not in re.split(r"[/?#]", url, maxsplit=1)[0]


class _StrictStyle:
    """bleach's CSSSanitizer for property names, plus a check of every value it lets through."""

    def __init__(self) -> None:
        self._properties = CSSSanitizer(
            allowed_css_properties=_CSS_PROPERTIES, allowed_svg_properties=frozenset()
        )

    def sanitize_css(self, style: str) -> str:
        if _FORBIDDEN_CSS.search(style):
            return ""
        allowed = str(self._properties.sanitize_css(style))
        declarations = tinycss2.parse_declaration_list(
            allowed, skip_comments=True, skip_whitespace=True
        )
        kept = [
            f"{declaration.lower_name}: {tinycss2.serialize(declaration.value).strip()}"
            for declaration in declarations
            if declaration.type == "declaration" and _is_plain_value(declaration.value)
        ]
        result = "; ".join(kept)
        # Serializing resolves CSS escapes, so the result is checked again.
        return "" if _FORBIDDEN_CSS.search(result) else result


def _is_plain_value(tokens: Iterable[Any]) -> bool:
    """Whether a CSS value is only keywords, numbers, colours and rgb()/hsl() of those."""
    has_content = False
    for token in tokens:
        if token.type in _CSS_VALUE_TOKENS or (
            token.type == "literal" and token.value in _CSS_VALUE_LITERALS
        ):
            pass
        elif token.type == "function" and token.lower_name in _CSS_FUNCTIONS:
            if not _is_plain_value(token.arguments):
                return False
        else:
            return False
        has_content = has_content or token.type != "whitespace"
    return has_content
