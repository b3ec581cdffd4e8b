"""The ``presto-deck`` command: serve, work, migrate, token, watch and dev."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer

from presto_deck.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from presto_deck.bootstrap import Container

app = typer.Typer(
    name="presto-deck",
    help="Turn a prompt into a presentation deck with an LLM and stream it live.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(asked: bool) -> None:
    if asked:
        from presto_deck import __version__

        typer.echo(f"presto-deck {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Turn a prompt into a presentation deck with an LLM and stream it live."""


def _fail(message: str) -> NoReturn:
    typer.echo(f"presto-deck: {message}", err=True)
    raise typer.Exit(code=2)


def _settings(
    *,
    needs_jwt_key: bool = False,
    needs: tuple[str, ...] = ("database_url", "redis_url"),
    traced: bool = False,
) -> Settings:
    """The settings, or one line saying which is wrong; ``traced``: the OTEL_* variables too,
    before OpenTelemetry's modules read them (and would fail with a traceback)."""
    try:
        settings = load_settings(needs=needs)
        if needs_jwt_key:
            settings.require_jwt_key()
        if traced:
            from presto_deck.infrastructure.observability.tracing import check_otel_environment

            check_otel_environment()
    except SettingsError as exc:
        _fail(str(exc))
    from presto_deck.infrastructure.observability.logging import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    return settings


def _container(settings: Settings, role: Literal["api", "worker", "both"]) -> Container:
    """Everything the process's role needs; a setting that cannot work stops it with one line."""
    from presto_deck.bootstrap import Role, build_container

    try:
        return build_container(settings, Role(role))
    except SettingsError as exc:
        _fail(str(exc))


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="Also run the worker in this process.")
    ] = False,
) -> None:
    """Run the HTTP and WebSocket API."""
    settings = _settings(needs_jwt_key=True, traced=True)  # before the heavy imports: fail fast

    import uvicorn

    from presto_deck.api.app import create_app
    from presto_deck.api.server import server_config

    app = create_app(_container(settings, "both" if with_worker else "api"))
    server = uvicorn.Server(server_config(app, settings, host=host, port=port))
    _settle_heap()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise typer.Exit(code=_STARTUP_FAILED)


def _settle_heap() -> None:
    """Move what start-up built (modules, the app, its routes) out of the collector's way: a full
    collection would otherwise walk it all again and again, pausing every request and socket for
    a hundred milliseconds or more; and from then on, time each collection (a metric)."""
    from presto_deck.infrastructure.observability.metrics import time_garbage_collections

    gc.collect()
    gc.freeze()
    time_garbage_collections()


#: How long ``work`` may take to stop once told to: under the 10 s that Docker and most
#: supervisors wait before they kill.
_WORKER_SHUTDOWN_SECONDS = 8.0
#: uvicorn's own exit status for a server that never started (a failed lifespan start-up).
_STARTUP_FAILED = 3


def work(
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port (/metrics)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address of the metrics port.")] = "127.0.0.1",
) -> None:
    """Run the worker: generation jobs, recovery sweep, outbox relay."""
    settings = _settings(traced=True)

    from presto_deck.worker import DeckWorker

    container = _container(settings, "worker")
    if metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr=metrics_host)
        except OSError as exc:
            _fail(f"cannot serve metrics on {metrics_host}:{metrics_port} ({exc.strerror})")
        from loguru import logger

        logger.info("metrics on http://{}:{}/metrics", metrics_host, metrics_port)

    async def run() -> None:
        worker = DeckWorker(container)
        worker.exit_within(_WORKER_SHUTDOWN_SECONDS)
        try:
            # arq's SIGTERM/SIGINT handler stops the worker by cancelling its main task.
            with contextlib.suppress(asyncio.CancelledError):
                await worker.run()
        finally:
            await worker.close()
            await container.close()

    _settle_heap()
    asyncio.run(run())


def migrate() -> None:
    """Bring the database schema up to date (safe to run again)."""
    settings = _settings(needs=("database_url",))
    from presto_deck.infrastructure.db.migrations import migrate_to_head
    from presto_deck.infrastructure.db.problems import describe_database_error

    try:
        before, after = migrate_to_head(settings.sqlalchemy_url, quiet=True)
    except Exception as exc:  # whatever the database did: one line, not a traceback
        _fail(describe_database_error(exc, settings.database_url))
    if before == after:
        typer.echo(f"database is up to date (schema revision {after})")
    else:
        typer.echo(f"database migrated from schema revision {before or 'none'} to {after}")


def token(
    user_id: Annotated[
        str, typer.Argument(metavar="USER_ID", help="The user id (the token's sub).")
    ],
    ttl: Annotated[int, typer.Option(min=1, help="Lifetime in seconds.")] = 3600,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Sign with the secret `presto-deck dev` keeps in this data dir."),
    ] = None,
) -> None:
    """Print a JWT for USER_ID signed with the configured secret.

    The secret is PRESTO_JWT_SECRET; with --data-dir (or, when no secret is set, under the
    default data dir of `presto-deck dev`) it is the one `presto-deck dev` created there.
    Neither PostgreSQL nor Redis is needed.
    """
    from presto_deck.infrastructure.tokens import InvalidToken, TokenVerifier

    try:
        secret = _dev_secret_of(data_dir) if data_dir else None
        settings = load_settings(needs=(), jwt_secret=secret)
        if not settings.jwt_secret and (kept := _dev_secret_of(_default_data_dir(), quiet=True)):
            settings = load_settings(needs=(), jwt_secret=kept)
        if not settings.jwt_secret:
            raise SettingsError(
                "PRESTO_JWT_SECRET is not set: set it to the secret the server checks tokens "
                "with, or sign with the secret of `presto-deck dev` (--data-dir)"
            )
        settings.require_jwt_key()  # a token the server would refuse to check is no use
        typer.echo(TokenVerifier(settings).mint(user_id, ttl))
    except (SettingsError, InvalidToken) as exc:
        _fail(str(exc))


def _dev_secret_of(data_dir: Path, *, quiet: bool = False) -> str | None:
    """The secret ``dev`` keeps in ``data_dir``; None if there is none and ``quiet``."""
    path = data_dir / _DEV_SECRET_FILE
    try:
        return path.read_text().strip()
    except OSError as exc:
        if quiet:
            return None
        raise SettingsError(
            f"no secret in {data_dir} ({exc.strerror}): `presto-deck dev --data-dir {data_dir}` "
            "creates one the first time it runs"
        ) from None


def watch(
    deck_id: Annotated[str, typer.Argument(metavar="DECK_ID", help="The deck to follow.")],
    token: Annotated[
        str, typer.Option(envvar="PRESTO_TOKEN", help="JWT (default: $PRESTO_TOKEN).")
    ],
    server: Annotated[
        str, typer.Option(help="The API: host:port or a base URL.")
    ] = "http://127.0.0.1:8000",
    last_version: Annotated[int, typer.Option(min=0, help="Print events after this one.")] = 1,
    follow: Annotated[bool, typer.Option(help="Keep following after the deck ends.")] = False,
    tries: Annotated[
        int, typer.Option(min=1, help="Tries in a row to reach the server before giving up.")
    ] = 6,
) -> None:
    """Print a deck's events as JSON lines, resuming on reconnect.

    Without --follow it stops when the deck ends, or, for a deck that had ended already (and
    may have been edited since), once it has printed the events up to the deck's version.
    """
    from presto_deck.watch import WatchError
    from presto_deck.watch import watch as follow_deck

    try:
        asyncio.run(
            follow_deck(
                server,
                deck_id,
                token,
                last_version,
                follow=follow,
                emit=typer.echo,
                warn=lambda message: typer.echo(f"presto-deck watch: {message}", err=True),
                tries=tries,
            )
        )
    except WatchError as exc:
        typer.echo(f"presto-deck watch: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        pass


#: The file in ``dev``'s data dir that holds its HS256 secret.
_DEV_SECRET_FILE = "jwt-secret"
#: Lifetime of the token ``dev`` prints: a developer's working month, not a production session.
_DEV_TOKEN_TTL_SECONDS = 30 * 24 * 3600


def dev(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the embedded servers keep their data (default: the user's data dir)."
        ),
    ] = None,
) -> None:
    """Run everything on this machine: API, worker, PostgreSQL, Redis.

    PostgreSQL and Redis are embedded (kept in the data dir) unless PRESTO_DATABASE_URL and
    PRESTO_REDIS_URL name servers to use instead; without PRESTO_JWT_SECRET a secret is
    created once and kept in the data dir ('presto-deck token --data-dir' signs with it).
    """
    # uvicorn re-raises SIGTERM once it has shut down; the default action would kill us before
    # the embedded servers are stopped, so turn it into the same unwinding as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        _run_dev(host, port, (data_dir or _default_data_dir()).resolve())


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port``, or None if it can."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"cannot listen on {host}:{port} ({reason}); pick another port with --port"
    return None


def _run_dev(host: str, port: int, data_dir: Path) -> None:
    from presto_deck.infrastructure.embedded import (
        EmbeddedServerError,
        embedded_postgres,
        embedded_redis,
        exclusive_data_dir,
    )

    with contextlib.ExitStack() as running:
        try:
            running.enter_context(exclusive_data_dir(data_dir))
            if problem := _cannot_listen(host, port):  # before any server is started
                _fail(problem)
            database_url = _from_environment("PRESTO_DATABASE_URL") or running.enter_context(
                embedded_postgres(data_dir / "postgres")
            )
            redis_url = _from_environment("PRESTO_REDIS_URL") or running.enter_context(
                embedded_redis(data_dir / "redis")
            )
        except (EmbeddedServerError, OSError) as exc:  # OSError: e.g. a read-only data dir
            _fail(str(exc))
        explicit = _set_variables()
        try:
            settings = load_settings(
                database_url=database_url,
                redis_url=redis_url,
                jwt_secret=None
                if explicit & {"PRESTO_JWT_SECRET", "PRESTO_JWT_PUBLIC_KEY"}
                else _dev_jwt_secret(data_dir),
                log_format=None if "PRESTO_LOG_FORMAT" in explicit else "text",
            )
            settings.require_jwt_key(strong=False)  # a developer's own machine
        except SettingsError as exc:
            _fail(str(exc))
        _serve_dev(settings, host, port, data_dir)


def _serve_dev(settings: Settings, host: str, port: int, data_dir: Path) -> None:
    from presto_deck.infrastructure.db.migrations import migrate_to_head
    from presto_deck.infrastructure.observability.logging import configure_logging
    from presto_deck.infrastructure.observability.tracing import check_otel_environment
    from presto_deck.infrastructure.tokens import TokenVerifier

    try:
        check_otel_environment()
    except SettingsError as exc:
        _fail(str(exc))

    configure_logging(settings.log_format, settings.log_level)
    try:
        migrate_to_head(settings.sqlalchemy_url, quiet=True)
    except Exception as exc:  # an external database it cannot use: one line, as migrate says it
        from presto_deck.infrastructure.db.problems import describe_database_error

        _fail(describe_database_error(exc, settings.database_url))

    import uvicorn

    from presto_deck.api.app import create_app
    from presto_deck.api.server import server_config

    token = (
        TokenVerifier(settings).mint("dev", _DEV_TOKEN_TTL_SECONDS) if settings.jwt_secret else None
    )
    # A wildcard address is where we listen, not where a browser can go.
    shown_host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown_host and not shown_host.startswith("["):
        shown_host = f"[{shown_host}]"

    class _AnnouncingServer(uvicorn.Server):
        """Prints the address once the API really answers, so scripts can wait for the line."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.should_exit:
                return
            typer.echo(f"Presto-Deck is running at http://{shown_host}:{port}/#token={token or ''}")
            if token:
                typer.echo(f"token (user 'dev', 30 days): {token}")
            typer.echo(f"data: {data_dir}")
            typer.echo("Press Ctrl-C to stop.")

    app = create_app(_container(settings, "both"))
    _settle_heap()
    _AnnouncingServer(server_config(app, settings, host=host, port=port)).run()


def _default_data_dir() -> Path:
    import platformdirs

    return platformdirs.user_data_path("presto-deck")


def _set_variables() -> set[str]:
    """The ``PRESTO_*`` variables that are set (an empty one counts as unset, as in settings)."""
    return {key for key, value in os.environ.items() if key.startswith("PRESTO_") and value.strip()}


def _from_environment(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _dev_jwt_secret(data_dir: Path) -> str:
    """The data dir's own HS256 secret, created on first use, so tokens survive a restart."""
    path = data_dir / _DEV_SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
    return path.read_text().strip()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# Listed in the order a newcomer needs them.
for _command in (dev, serve, work, migrate, token, watch):
    app.command()(_command)
