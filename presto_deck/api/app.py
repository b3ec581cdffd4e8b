"""The Litestar application: routes, dependencies, the Pub/Sub fan-out and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import Components, SecurityScheme
from loguru import logger
from redis.asyncio import Redis

from presto_deck import __version__
from presto_deck.api.decks import DeckController
from presto_deck.api.errors import exception_handlers
from presto_deck.api.health import live, metrics, ready
from presto_deck.api.live_sockets import LiveSockets
from presto_deck.api.pages import page_router
from presto_deck.api.slides import SlideController
from presto_deck.api.themes import list_themes
from presto_deck.api.websocket import deck_events_socket
from presto_deck.bootstrap import Container
from presto_deck.infrastructure.messaging import keys
from presto_deck.infrastructure.messaging.pubsub import ResilientPubSubBackend
from presto_deck.infrastructure.messaging.stream import StreamFanout
from presto_deck.infrastructure.readiness import OK
from presto_deck.settings import Settings

_SHUTDOWN_STEP_SECONDS = 3.0
#: How the API's Pub/Sub connection shows in Redis's CLIENT LIST.
PUBSUB_CLIENT_NAME = "presto-deck-pubsub"


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


async def _say_what_is_not_ready(container: Container) -> None:
    """Log once at start what keeps the instance from being ready (``/health/ready`` says it
    for as long as it lasts)."""
    for name, state in (await container.readiness.check()).items():
        if state != OK:
            logger.warning("not ready: {}: {}", name, state)


def create_app(container: Container, *, with_worker: bool = False) -> Litestar:
    """The API; with ``with_worker`` the arq worker runs in the same process and event loop."""
    live_sockets = LiveSockets()
    # Pub/Sub holds one connection per process and must not hit the client's read timeout.
    pubsub_redis = Redis.from_url(
        container.settings.redis_url,
        socket_connect_timeout=5,
        health_check_interval=30,
        client_name=PUBSUB_CLIENT_NAME,
    )
    backend = ResilientPubSubBackend(
        redis=pubsub_redis,
        namespace=keys.channels_prefix(container.settings.redis_url),
        on_reconnect=live_sockets.catch_up_all,
    )
    channels = ChannelsPlugin(
        backend=backend,
        arbitrary_channels_allowed=True,
        # Live events a slow socket may fall behind by before the oldest are dropped; a drop
        # shows up as a version gap, which that socket backfills from PostgreSQL.
        subscriber_max_backlog=container.settings.ws_send_queue,
        subscriber_backlog_strategy="dropleft",
    )

    async def broadcast(channel: str, data: bytes) -> None:
        await channels.wait_published(data, [channel])

    async def tell_every_instance_to_catch_up() -> None:
        await channels.wait_published(b"", [keys.CATCH_UP_CHANNEL])

    async def catch_up_when_told() -> None:
        async with channels.start_subscription([keys.CATCH_UP_CHANNEL]) as subscriber:
            async for _ in subscriber.iter_events():
                if told := live_sockets.catch_up_all():
                    logger.info("live events may have been lost; {} socket(s) catch up", told)

    fanout = StreamFanout(container.redis, broadcast, on_reset=tell_every_instance_to_catch_up)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        from presto_deck.worker import DeckWorker

        tasks = [
            asyncio.create_task(fanout.run(), name="stream-fanout"),
            asyncio.create_task(catch_up_when_told(), name="catch-up-listener"),
        ]
        await _say_what_is_not_ready(container)
        worker = DeckWorker(container, handle_signals=False) if with_worker else None
        worker_task = asyncio.create_task(worker.run(), name="worker") if worker else None
        logger.info("API ready{}", " with an in-process worker" if with_worker else "")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                await worker.stop(worker_task)
            for task in tasks:
                task.cancel()
            # Shutting down must not hang on a backing service: each wait is bounded.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SHUTDOWN_STEP_SECONDS):
                    await asyncio.gather(*tasks, return_exceptions=True)
            for closing in (container.close(), pubsub_redis.aclose()):
                with contextlib.suppress(TimeoutError, Exception):
                    async with asyncio.timeout(_SHUTDOWN_STEP_SECONDS):
                        await closing

    def provide(value: Any) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    return Litestar(
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
        plugins=[channels],
        dependencies={
            "decks": provide(container.decks),
            "edits": provide(container.edits),
            "exports": provide(container.exports),
            "themes": provide(container.themes),
            "verifier": provide(container.verifier),
            "sockets": provide(container.sockets),
            "settings": provide(container.settings),
            "readiness": provide(container.readiness),
            "live_sockets": provide(live_sockets),
        },
        exception_handlers=exception_handlers,
        request_max_body_size=container.settings.http_max_body_bytes,  # 413 beyond
        lifespan=[lifespan],
        openapi_config=_openapi(container.settings),
        logging_config=None,
        debug=False,
    )
