"""The ``presto-deck`` command: serve, work, migrate and token."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from presto_deck.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from alembic.config import Config

app = typer.Typer(
    name="presto-deck",
    help="Turn a prompt into a presentation deck with an LLM and stream it live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"presto-deck: {message}", err=True)
    raise typer.Exit(code=2)


def _settings(*, needs_jwt_key: bool = False) -> Settings:
    try:
        settings = load_settings()
        if needs_jwt_key:
            settings.require_jwt_key()
    except SettingsError as exc:
        _fail(str(exc))
    from presto_deck.infrastructure.observability.logging import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Also run the worker in this process.")
    ] = False,
) -> None:
    """Run the HTTP and WebSocket API."""
    settings = _settings(needs_jwt_key=True)  # before the heavy imports: fail fast

    import uvicorn

    from presto_deck.api.app import create_app
    from presto_deck.bootstrap import build_container

    uvicorn.run(
        create_app(build_container(settings), with_worker=with_worker),
        host=host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # small frames; deflate costs tens of KiB a socket
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=5,
        server_header=False,
    )


@app.command()
def work() -> None:
    """Run the worker: generation jobs, recovery sweep, outbox relay."""
    settings = _settings()

    from presto_deck.bootstrap import build_container
    from presto_deck.worker import build_worker

    async def run() -> None:
        container = build_container(settings)
        worker = build_worker(container)
        try:
            # arq's SIGTERM/SIGINT handler stops the worker by cancelling its main task.
            with contextlib.suppress(asyncio.CancelledError):
                await worker.async_run()
        finally:
            await worker.close()
            await container.close()

    asyncio.run(run())


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run any number of times)."""
    from alembic import command

    settings = _settings()
    command.upgrade(migrations_config(settings.sqlalchemy_url), "head")
    typer.echo("database is up to date")


def migrations_config(sqlalchemy_url: str) -> Config:
    """Alembic's configuration for the migrations beside the package."""
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url
    return config


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user id (the token's sub).")],
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a JWT for USER_ID signed with the configured secret."""
    from presto_deck.api.auth import InvalidToken, TokenVerifier

    try:
        settings = load_settings()
        typer.echo(TokenVerifier(settings).mint(user_id, ttl))
    except (SettingsError, InvalidToken) as exc:
        _fail(str(exc))


@app.command()
def watch(
    deck_id: Annotated[str, typer.Argument(help="The deck to follow.")],
    token: Annotated[
        str, typer.Option(envvar="PRESTO_TOKEN", help="JWT (default: $PRESTO_TOKEN).")
    ],
    server: Annotated[str, typer.Option(help="The API's base URL.")] = "http://127.0.0.1:8000",
    last_version: Annotated[int, typer.Option(min=0, help="Print events after this one.")] = 1,
    follow: Annotated[bool, typer.Option(help="Keep following after the deck ends.")] = False,
) -> None:
    """Print a deck's events as JSON lines, resuming after a dropped connection."""
    from presto_deck.watch import WatchError
    from presto_deck.watch import watch as follow_deck

    try:
        asyncio.run(
            follow_deck(server, deck_id, token, last_version, follow=follow, emit=typer.echo)
        )
    except WatchError as exc:
        _fail(f"the server closed the socket: {exc}")
    except KeyboardInterrupt:
        pass
