"""The Litestar application: routes, dependencies and the lifespan of what the API runs."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPluginProtocol
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import Scope
from loguru import logger

from presto_deck import __version__
from presto_deck.api.decks import DeckController
from presto_deck.api.errors import exception_handlers
from presto_deck.api.health import live, metrics, ready
from presto_deck.api.pages import page_router
from presto_deck.api.slides import SlideController
from presto_deck.api.themes import list_themes
from presto_deck.api.websocket import deck_events_socket
from presto_deck.bootstrap import Container
from presto_deck.infrastructure.observability.tracing import redact_url_attributes
from presto_deck.infrastructure.readiness import OK
from presto_deck.settings import Settings

#: The Swagger UI the docs page loads (from jsDelivr) when ``PRESTO_API_DOCS_PAGE`` is on.
_SWAGGER_UI_VERSION = "5.18.2"


def _openapi(settings: Settings) -> OpenAPIConfig:
    """The schema at ``/schema/openapi.json`` (and ``.yaml``), with the bearer token scheme,
    so a client can Authorize. The interactive page at ``/schema`` loads its scripts from a
    CDN and shares the origin of the page that keeps a token: it is off unless turned on."""
    plugins: list[OpenAPIRenderPlugin] = [JsonRenderPlugin(), YamlRenderPlugin()]
    if settings.api_docs_page:
        plugins.insert(0, SwaggerRenderPlugin(version=_SWAGGER_UI_VERSION, path="/"))
    return OpenAPIConfig(
        title="Presto-Deck",
        version=__version__,
        path="/schema",
        render_plugins=plugins,
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A JWT whose sub is the user (presto-deck token USER).",
                )
            }
        ),
        security=[{"bearer": []}],
    )


#: Not traced: probes and scrapes every few seconds, static files, and the WebSocket, whose
#: connection lasts minutes and may carry its token in the query string (its replays are traced,
#: and the live events it gets are their deck's fan-out spans).
_UNTRACED_PATHS = [r"^/health/", r"^/metrics$", r"^/static/", r"^/ws/"]


class _RouteNames:
    """The route a request path matches, as its template (``/api/v1/decks/{deck_id}``): the
    name of its span. A name per path would be one per deck, and any URL a client makes up."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], str]] = []

    def learn(self, app: Litestar) -> None:
        for route in app.routes:
            literals = _PARAMETER.sub("\0", route.path).split("\0")
            pattern = "[^/]+".join(map(re.escape, literals))
            self._routes.append((re.compile(f"^{pattern}/?$"), _PARAMETER.sub(r"{\1}", route.path)))

    def span_details(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        path = scope.get("path", "")
        route = next((name for pattern, name in self._routes if pattern.match(path)), "unmatched")
        method = scope.get("method")
        return (f"{method} {route}" if method else route), {"http.route": route}


_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _tracing_plugins(container: Container, routes: _RouteNames) -> list[InitPluginProtocol]:
    """A server span for each HTTP request, when the process traces at all."""
    if container.tracing is None:
        return []
    return [
        OpenTelemetryPlugin(
            OpenTelemetryConfig(
                tracer_provider=container.tracing.provider,
                exclude=_UNTRACED_PATHS,
                exclude_spans=["receive", "send"],  # one span a request, not one per message
                scope_span_details_extractor=routes.span_details,
                server_request_hook_handler=redact_url_attributes,
            )
        )
    ]


async def _say_what_is_not_ready(container: Container) -> None:
    """Log once at start what keeps the instance from being ready (``/health/ready`` says it
    for as long as it lasts)."""
    for name, state in (await container.readiness.check()).items():
        if state != OK:
            logger.warning("not ready: {}: {}", name, state)


def create_app(container: Container) -> Litestar:
    """The API; a container built for both roles also runs the worker in this process and its
    event loop."""
    api = container.api_role()
    live_events = api.live
    routes = _RouteNames()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        from presto_deck.worker import DeckWorker

        await live_events.start()
        await _say_what_is_not_ready(container)
        worker = DeckWorker(container, handle_signals=False) if container.worker else None
        worker_task = asyncio.create_task(worker.run(), name="worker") if worker else None
        logger.info("API ready{}", " with an in-process worker" if worker else "")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                await worker.stop(worker_task)
            await live_events.stop()
            await container.close()  # each step bounded: a backing service may be down

    def provide(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    app = Litestar(
        route_handlers=[
            DeckController,
            SlideController,
            list_themes,
            deck_events_socket,
            live,
            ready,
            metrics,
            page_router(container.themes),
        ],
        plugins=[live_events.channels, *_tracing_plugins(container, routes)],
        dependencies={
            "decks": provide(api.services.decks),
            "edits": provide(api.services.edits),
            "exports": provide(api.services.exports),
            "themes": provide(container.themes),
            "verifier": provide(api.verifier),
            "sockets": provide(api.services.sockets),
            "heads": provide(api.services.heads),
            "settings": provide(container.settings),
            "readiness": provide(container.readiness),
            "feeds": provide(live_events.feeds),
        },
        exception_handlers=exception_handlers,
        request_max_body_size=container.settings.http_max_body_bytes,  # 413 beyond
        lifespan=[lifespan],
        openapi_config=_openapi(container.settings),
        logging_config=None,
        debug=False,
    )
    routes.learn(app)
    return app
