"""The real API and worker, run in the test's event loop on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from presto_deck.api.app import create_app
from presto_deck.api.server import server_config
from presto_deck.bootstrap import ApiServices, Container, Role, WorkerServices, build_container
from presto_deck.settings import Settings
from presto_deck.worker import DeckWorker


@dataclass
class RunningApi:
    url: str
    ws_url: str
    container: Container
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def running_api(
    settings: Settings, *, with_worker: bool = False
) -> AsyncIterator[RunningApi]:
    container = build_container(settings, Role.BOTH if with_worker else Role.API)
    app = create_app(container)
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=0))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(15):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", container, server)
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[DeckWorker]:
    container = build_container(settings, Role.WORKER)
    worker = DeckWorker(container, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(task)
        await container.close()


def api_of(container: Container) -> ApiServices:
    """The API role's use cases of a container built with that role."""
    return container.api_role().services


def worker_of(container: Container) -> WorkerServices:
    """The worker role's use cases of a container built with that role."""
    return container.worker_role().services
