"""The web page at ``/`` and its static files, served from the package with strict headers.

The page is plain HTML, CSS and JavaScript (no build step). Slide HTML is inserted as stored; it
was sanitized when written, and the Content-Security-Policy below is the second line of defence:
no inline or foreign script can run, and the page only talks to its own origin (``'self'`` also
covers the same-origin ``ws:``/``wss:`` of the deck WebSocket).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Annotated

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, HeaderParameter

from presto_deck.domain.themes import ThemeBook
from presto_deck.infrastructure.writers.stylesheet import theme_stylesheet

__all__ = ["CONTENT_SECURITY_POLICY", "page_router"]

#: Sanitized slides may keep a few inline ``style`` attributes (colour, alignment), hence
#: ``style-src-attr 'unsafe-inline'``; style elements and sheets still come only from us.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: The files the page is made of; nothing else under ``static/`` is served.
_MEDIA_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}


#: Written from the theme files when the app starts.
_THEMES_CSS = "themes.css"


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> _Asset:
        return cls(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@cache
def _asset(name: str) -> _Asset:
    if name not in _MEDIA_TYPES:
        raise NotFoundException()
    body = files("presto_deck.api").joinpath("static", name).read_bytes()
    return _Asset.of(body, _MEDIA_TYPES[name])


def _serve(asset: _Asset, if_none_match: str | None) -> Response[bytes]:
    # Revalidated on every load (cheap with the ETag), so an upgrade never mixes old and new.
    headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if if_none_match is not None and asset.etag in if_none_match:
        return Response(b"", status_code=304, headers=headers, media_type=asset.media_type)
    return Response(asset.body, headers=headers, media_type=asset.media_type)


_IfNoneMatch = Annotated[str | None, HeaderParameter(name="If-None-Match", max_length=1000)]


@get("/", include_in_schema=False, sync_to_thread=False)
def index(if_none_match: _IfNoneMatch = None) -> Response[bytes]:
    return _serve(_asset("index.html"), if_none_match)


def page_router(themes: ThemeBook) -> Router:
    """The page, its files, and the slides' stylesheet written from ``themes``."""
    css = theme_stylesheet(themes.values(), fallback=themes.of(None))
    stylesheet = _Asset.of(css.encode(), "text/css")

    @get("/static/{name:str}", include_in_schema=False, sync_to_thread=False)
    def static_file(name: FromPath[str], if_none_match: _IfNoneMatch = None) -> Response[bytes]:
        asset = stylesheet if name == _THEMES_CSS else _asset(name)
        return _serve(asset, if_none_match)

    return Router(path="/", route_handlers=[index, static_file])
