"""End to end: the real ``presto-deck`` processes, started as an operator starts them and driven
over HTTP and WebSocket as a client drives them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from presto_deck import __version__
from presto_deck.infrastructure.db.migrations import head_revision
from tests.e2e.conftest import Deployment, Stack, empty_database, mint
from tests.support.client import (
    DeckClient,
    Frame,
    assert_contiguous,
    is_terminal,
    receive_events,
)
from tests.support.processes import (
    CLEAN_EXIT_CODES,
    ManagedProcess,
    clean_environment,
    free_port,
)

pytestmark = pytest.mark.e2e

#: How long SIGTERM may take to stop an idle process.
STOP_SECONDS = 5.0


def normal_life(slides: int) -> list[str]:
    return ["DeckStarted", "PlanUpdated", *["SlideAdded"] * slides, "DeckCompleted"]


def after_slides(count: int) -> Callable[[Frame], bool]:
    """A ``receive_events`` condition: the ``count``-th SlideAdded (or the end of the deck)."""
    seen = 0

    def until(frame: Frame) -> bool:
        nonlocal seen
        seen += frame.get("event_type") == "SlideAdded"
        return seen >= count or is_terminal(frame)

    return until


async def create_and_watch(client: DeckClient, slides: int) -> tuple[str, list[Frame]]:
    """POST a deck, then follow it over the WebSocket (from version 1, so nothing is missed)."""
    deck_id = await client.create("The history of tea", slide_count=slides)
    async with client.socket(deck_id, last_version=1) as ws:
        return deck_id, await receive_events(ws, is_terminal)


async def assert_completed(client: DeckClient, deck_id: str, slides: int, version: int) -> None:
    deck = await client.deck(deck_id)
    assert deck["status"] == "COMPLETED"
    assert deck["version"] == version
    assert [slide["order"] for slide in deck["slides"]] == list(range(1, slides + 1))
    assert len({slide["id"] for slide in deck["slides"]}) == slides


def slide_orders(events: list[Frame]) -> list[int]:
    return [e["payload"]["order"] for e in events if e["event_type"] == "SlideAdded"]


# -- commands that run to their end ---------------------------------------------------------------


def test_migrate_twice_on_a_fresh_database_succeeds_and_the_second_run_changes_nothing(
    deployment: Deployment,
) -> None:
    with empty_database() as url:
        first = deployment.run("migrate", database_url=url)
        with psycopg.connect(url) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
            after_first = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        second = deployment.run("migrate", database_url=url)
        with psycopg.connect(url) as conn:
            after_second = conn.execute("SELECT version_num FROM alembic_version").fetchall()

    assert first.returncode == 0, first.output()
    assert second.returncode == 0, second.output()
    assert {"decks", "slides", "deck_events", "alembic_version"} <= tables
    assert first.stderr() == second.stderr() == ""  # one line, on stdout, and nothing else
    assert len(after_first) == 1
    assert after_second == after_first
    head = head_revision()
    assert first.stdout().strip() == f"database migrated from schema revision none to {head}"
    assert second.stdout().strip() == f"database is up to date (schema revision {head})"
    assert "setup plugin" not in first.stderr()


def test_both_roles_wait_out_an_unreachable_redis_with_one_warning_and_stop_cleanly(
    deployment: Deployment,
) -> None:
    deployment.stop_all()  # the port is ours alone
    down = {"redis_url": "redis://127.0.0.1:9/0", "log_format": "text"}
    work = deployment.start_work(**down)
    serve = deployment.start_serve("--with-worker", **down)
    for process in (work, serve):
        process.wait_for_log("Redis is unavailable, the worker waits for it")
    time.sleep(3)  # several rounds of retries
    stopped = {process.name: process.stop() for process in (work, serve)}

    for process in (work, serve):
        log = process.stderr()
        assert stopped[process.name].returncode in CLEAN_EXIT_CODES, process.tail()
        assert not stopped[process.name].forced
        assert log.count("Redis is unavailable, the worker waits for it") == 1, log
        assert log.count("Starting worker for") == 1, log
        for noise in ("Traceback", "ExceptionGroup", "shutdown failed", "SIGUSR1", " {}\n"):
            assert noise not in log, (noise, log)
    assert serve.stderr().count("event stream unavailable") == 1
    assert serve.stderr().count("not ready: redis: no Redis answers at 127.0.0.1:9") == 1


async def test_serve_on_a_database_without_the_schema_is_not_ready_and_says_why(
    deployment: Deployment,
) -> None:
    deployment.stop_all()  # the port is ours alone
    with empty_database() as url:
        serve = deployment.start_serve(database_url=url)
        serve.wait_for_log("not ready: database")
        token = mint("alice")
        async with httpx.AsyncClient(base_url=deployment.url) as http:
            before = await http.get("/health/ready")
            refused = await http.get("/api/v1/decks", headers={"Authorization": f"Bearer {token}"})
            migrated = deployment.run("migrate", database_url=url)
            after = await http.get("/health/ready")
        serve.stop()

    assert before.status_code == 503
    assert before.json()["database"] == "the database has no schema yet: run presto-deck migrate"
    assert refused.status_code == 503  # not a 500: the service waits for the migration
    assert refused.json()["code"] == "unavailable"
    assert migrated.returncode == 0, migrated.output()
    assert after.status_code == 200
    assert serve.stderr().count("not ready: database: the database has no schema yet") == 1


@pytest.mark.parametrize(
    ("database", "said"),
    [
        ("postgres@127.0.0.1:5432/presto_no_such_db", 'the database "presto_no_such_db" does not'),
        ("presto_no_such_role@127.0.0.1:5432/postgres", 'the role "presto_no_such_role" does not'),
        ("postgres@127.0.0.1:9/postgres", "no PostgreSQL answers at 127.0.0.1:9"),
    ],
    ids=["no database", "no role", "no server"],
)
def test_migrate_against_a_database_it_cannot_use_says_why_in_one_line(
    deployment: Deployment, database: str, said: str
) -> None:
    # Nor does it need Redis: its URL is not set.
    failed = deployment.run("migrate", database_url=f"postgresql://{database}", redis_url=None)

    lines = [line for line in failed.stderr().splitlines() if line.strip()]
    assert failed.returncode == 2
    assert len(lines) == 1, failed.stderr()
    assert lines[0].startswith(f"presto-deck: {said}")
    assert "PRESTO_DATABASE_URL" in lines[0]


@pytest.fixture(scope="module")
def failed_startups(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ManagedProcess]:
    """A process with one bad setting each, all started at once (each import takes seconds):
    ``serve``, or ``work`` for the model's settings (only a process that writes builds a model
    client)."""
    bad_themes = tmp_path_factory.mktemp("themes")
    (bad_themes / "acme.toml").write_text('label = "Acme"\n[colors]\nbackground = "red"\n')
    cases: dict[str, tuple[str, dict[str, str | None]]] = {
        "PRESTO_DATABASE_URL": ("serve", {"database_url": None}),
        "PRESTO_WS_HEARTBEAT_SECONDS": ("serve", {"ws_heartbeat_seconds": "abc"}),
        "PRESTO_JWT_SECRET": ("serve", {"jwt_secret": None}),
        "PRESTO_JWT_SECRET=short": ("serve", {"jwt_secret": "only-twenty-one-bytes"}),
        "PRESTO_LLM_MODEL=gpt4": ("serve", {"llm_model": "gpt4"}),
        "PRESTO_LLM_MODEL=anthropic": ("work", {"llm_model": "anthropic:claude-x"}),
        "PRESTO_LLM_MODEL=openai": (
            "work",
            {"llm_model": "openai:gpt-4o-mini", "llm_api_key": None},
        ),
        "PRESTO_THEMES_DIR": ("serve", {"themes_dir": str(bad_themes)}),
        "OTEL_TRACES_EXPORTER=zipkin": ("serve", {}),
        "OTEL_PROPAGATORS=b3": ("work", {}),
    }
    processes = {
        case: deployment.launch(
            f"{command}-bad-{case.lower().replace('=', '-')}",
            command,
            *(["--port", str(free_port())] if command == "serve" else []),
            environment=dict([case.split("=", 1)]) if case.startswith("OTEL_") else None,
            **overrides,
        )
        for case, (command, overrides) in cases.items()
    }
    for process in processes.values():
        process.wait_for_exit(timeout=60)
    return processes


@pytest.mark.parametrize(
    "case",
    [
        "PRESTO_DATABASE_URL",
        "PRESTO_WS_HEARTBEAT_SECONDS",
        "PRESTO_JWT_SECRET",
        "PRESTO_JWT_SECRET=short",  # under the 32 bytes HS256 needs
        "PRESTO_LLM_MODEL=gpt4",  # no provider
        "PRESTO_LLM_MODEL=anthropic",  # a provider whose package is not installed
        "PRESTO_LLM_MODEL=openai",  # a hosted provider without a key
        "PRESTO_THEMES_DIR",  # a theme file with a bad colour
        "OTEL_TRACES_EXPORTER=zipkin",  # an exporter this version does not have
        "OTEL_PROPAGATORS=b3",  # a propagator it does not have (read as OpenTelemetry loads)
    ],
)
def test_a_process_with_a_missing_or_invalid_setting_exits_with_one_line_naming_it(
    failed_startups: dict[str, ManagedProcess], case: str
) -> None:
    process = failed_startups[case]
    lines = [line for line in process.stderr().splitlines() if line.strip()]

    assert process.returncode not in (0, None)
    assert len(lines) == 1, process.stderr()
    assert case.partition("=")[0] in lines[0]
    assert "Traceback" not in process.output()


# -- serve and work as separate processes ---------------------------------------------------------


def test_token_needs_only_the_secret_and_says_where_to_find_one(tmp_path: Path) -> None:
    home = {"XDG_DATA_HOME": str(tmp_path / "no-dev-data")}  # no data dir of `dev` to fall back to
    with_secret = clean_environment({**home, "PRESTO_JWT_SECRET": "s" * 40})
    minted = ManagedProcess.start("token-secret", ["token", "bob"], with_secret, tmp_path)
    short = clean_environment({**home, "PRESTO_JWT_SECRET": "short"})
    weak = ManagedProcess.start("token-short", ["token", "bob"], short, tmp_path)
    refused = ManagedProcess.start(
        "token-none", ["token", "bob"], clean_environment(home), tmp_path
    )
    for process in (minted, refused, weak):
        process.wait_for_exit(timeout=60)

    assert minted.returncode == 0, minted.output()
    claims = jwt.decode(minted.stdout().strip(), "s" * 40, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert weak.returncode == 2
    assert weak.stderr().strip().startswith("presto-deck: PRESTO_JWT_SECRET is 5 bytes;")
    assert refused.returncode == 2
    assert refused.stderr().strip() == (
        "presto-deck: PRESTO_JWT_SECRET is not set: set it to the secret the server checks "
        "tokens with, or sign with the secret of `presto-deck dev` (--data-dir)"
    )


async def test_token_printed_by_the_cli_is_accepted_by_the_server(
    deployment: Deployment, separate_stack: Stack
) -> None:
    printed = deployment.run("token", "alice")
    assert printed.returncode == 0, printed.output()
    lines = printed.stdout().splitlines()
    assert len(lines) == 1
    token = lines[0].strip()
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=deployment.url, headers=headers, timeout=10) as http:
        listed = await http.get("/api/v1/decks")
        created = await http.post("/api/v1/decks", json={"prompt": "Tea", "slide_count": 1})
    assert listed.status_code == 200, listed.text
    assert created.status_code == 202, created.text
    # The same user with a token from elsewhere sees the deck: the CLI's ``sub`` is honoured.
    other = DeckClient(deployment.url, deployment.ws_url, mint("alice"))
    try:
        assert (await other.deck(created.json()["deck_id"]))["id"] == created.json()["deck_id"]
    finally:
        await other.aclose()


async def test_deck_streams_live_through_separate_serve_and_work_processes(
    separate_stack: Stack, alice: DeckClient
) -> None:
    deck_id, events = await create_and_watch(alice, slides=5)

    assert [event["event_type"] for event in events] == normal_life(5)
    assert_contiguous(events, first=2)
    assert slide_orders(events) == [1, 2, 3, 4, 5]
    await assert_completed(alice, deck_id, slides=5, version=events[-1]["version"])


async def test_logs_are_json_lines_without_tokens_or_tracebacks_after_hostile_requests(
    deployment: Deployment, separate_stack: Stack, alice: DeckClient
) -> None:
    token = alice.token
    forged = mint("alice", secret="not-the-secret-of-this-deployment-at-all")
    expired = mint("alice", ttl=-60)
    unsigned = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    auth = {"Authorization": f"Bearer {token}"}
    unknown_deck = "00000000-0000-4000-8000-000000000000"
    requests: list[tuple[str, str, dict[str, str], bytes | None, int | None]] = [
        ("GET", "/api/v1/decks", {"Authorization": f"Bearer {forged}"}, None, 401),
        ("GET", "/api/v1/decks", {"Authorization": f"Bearer {expired}"}, None, 401),
        ("GET", "/api/v1/decks", {"Authorization": f"Bearer {unsigned}"}, None, 401),
        ("GET", "/api/v1/decks", {"Authorization": "Bearer not-a-jwt"}, None, 401),
        ("GET", "/api/v1/decks", {"Authorization": token}, None, 401),
        ("GET", f"/api/v1/decks?token={token}", {}, None, 401),
        ("GET", f"/api/v1/decks/{token}", auth, None, None),
        ("POST", "/api/v1/decks", auth, b"{not json", 400),
        ("POST", "/api/v1/decks", auth, b"\xff\xfe\x00", 400),
        ("POST", "/api/v1/decks", auth, b"[]", 400),
        ("POST", "/api/v1/decks", auth, b'{"prompt": ""}', 400),
        ("POST", "/api/v1/decks", auth, b'{"prompt": 5}', 400),
        ("POST", "/api/v1/decks", auth, b'{"prompt": "Tea", "slide_count": 99}', 400),
        ("POST", "/api/v1/decks", auth, b'{"prompt": "Tea", "surprise": true}', 400),
        ("GET", "/api/v1/decks/not-a-uuid", auth, None, None),
        ("GET", f"/api/v1/decks/{unknown_deck}", auth, None, 404),
        ("GET", f"/api/v1/decks/{unknown_deck}/events?after_version=-1", auth, None, 400),
        ("GET", "/api/v1/decks?limit=abc", auth, None, 400),
        ("GET", "/api/v2/nothing", auth, None, 404),
        ("GET", f"/ws/decks/{unknown_deck}?token={token}", {}, None, None),
        ("DELETE", "/api/v1/decks", auth, None, 405),
        ("GET", "/" + "x" * 4000, {}, None, 404),
    ]
    problems = []
    async with httpx.AsyncClient(base_url=deployment.url, timeout=10) as http:
        for method, path, headers, body, expected in requests:
            response = await http.request(method, path, headers=headers, content=body)
            label = f"{method} {path[:60]} {body!r}"
            if response.status_code >= 500 or response.status_code < 400:
                problems.append(f"{label} -> {response.status_code}")
            elif expected is not None and response.status_code != expected:
                problems.append(f"{label} -> {response.status_code}, expected {expected}")
            elif "json" not in response.headers.get("content-type", ""):
                problems.append(f"{label} -> {response.status_code} without a JSON body")

    deck_id, events = await create_and_watch(alice, slides=2)
    assert is_terminal(events[-1])
    socket_url = f"{deployment.ws_url}/ws/decks/{deck_id}"
    close_codes = {
        "forged token in query": await close_code(f"{socket_url}?token={forged}"),
        "forged token in header": await close_code(
            socket_url, {"Authorization": f"Bearer {forged}"}
        ),
        "expired token in header": await close_code(
            socket_url, {"Authorization": f"Bearer {expired}"}
        ),
        "bad last_version": await close_code(f"{socket_url}?token={token}&last_version=x"),
        "unknown deck": await close_code(
            f"{deployment.ws_url}/ws/decks/{unknown_deck}?token={token}"
        ),
    }

    assert problems == []
    assert close_codes == {
        "forged token in query": 4401,
        "forged token in header": 4401,
        "expired token in header": 4401,
        "bad last_version": 4400,
        "unknown deck": 4404,
    }
    served = separate_stack.serve.output()
    assert "WebSocket /ws/decks/" in served, "the handshakes should have been logged"
    for process in separate_stack.processes:
        text = process.output()
        assert "eyJ" not in text, f"{process.name} logged a JWT"
        for secret_part in {t.split(".")[2] for t in (token, forged, expired) if "." in t}:
            assert secret_part not in text, f"{process.name} logged a token's signature"
        assert "Traceback" not in text, f"{process.name} logged a traceback"
        assert not_json_lines(text) == [], f"{process.name} wrote lines that are not JSON"


async def test_tokens_in_percent_encoded_query_parameters_never_reach_the_log(
    deployment: Deployment, separate_stack: Stack, alice: DeckClient
) -> None:
    token, encoded = alice.token, percent_encoded(alice.token)
    deck_id, _ = await create_and_watch(alice, slides=1)
    targets = [
        f"/api/v1/decks?%74oken={encoded}",
        f"/api/v1/decks?last_version=1&t%6Fk%65n={token}",
        f"/api/v1/decks?{percent_encoded('token')}={encoded}",
    ]
    async with httpx.AsyncClient(base_url=deployment.url, timeout=10) as http:
        statuses = [(await http.get(target)).status_code for target in targets]
    # The application decodes the name and the value, so this socket is let in by its token.
    socket_url = f"{deployment.ws_url}/ws/decks/{deck_id}?last_version=1&%74oken={encoded}"
    async with websockets.connect(socket_url) as ws:
        replayed = await receive_events(ws, is_terminal)
    separate_stack.serve.wait_for_log(r"WebSocket /ws/decks/\S+%74oken=")
    separate_stack.serve.wait_for_log(r"GET /api/v1/decks\?%74oken=")

    assert statuses == [401, 401, 401]
    assert is_terminal(replayed[-1])
    signature = token.rsplit(".", 1)[1]
    for process in separate_stack.processes:
        text = process.output()
        for secret in (encoded, signature, percent_encoded(signature)):
            assert secret not in text, f"{process.name} logged a percent-encoded token"


def percent_encoded(text: str) -> str:
    """Every byte as %XX, which a URL parser decodes back to ``text``."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


async def close_code(url: str, headers: dict[str, str] | None = None) -> int:
    """The code the server closes a fresh socket with, before sending any event."""
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            async with asyncio.timeout(10):
                frame = await ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else -1
    raise AssertionError(f"the socket stayed open and sent {frame!r}")


def not_json_lines(text: str) -> list[str]:
    """Complete lines that are not a JSON object (a line still being written is left out)."""
    lines = text.split("\n")[:-1]  # after the last newline: nothing, or a line in progress
    wrong = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            wrong.append(line)
            continue
        if not isinstance(parsed, dict):
            wrong.append(line)
    return wrong


def test_sigterm_stops_serve_and_work_within_seconds_with_a_clean_exit(
    separate_stack: Stack,
) -> None:
    assert separate_stack.work is not None
    outcomes = {
        "serve": stop_with_sigterm(separate_stack.serve),
        "work": stop_with_sigterm(separate_stack.work),
    }

    assert outcomes == {"serve": CLEAN_STOP, "work": CLEAN_STOP}


CLEAN_STOP = {"exit": "clean", "within seconds": True, "traceback": False}


def stop_with_sigterm(process: ManagedProcess) -> dict[str, object]:
    """Stop the process (this also fails if any process of its group is left running)."""
    assert process.running, f"{process.name} died before the test: {process.output()[-2000:]}"
    stopped = process.stop(timeout=15)
    clean = stopped.returncode in CLEAN_EXIT_CODES and not stopped.forced
    return {
        "exit": "clean" if clean else f"status {stopped.returncode}",
        "within seconds": stopped.seconds < STOP_SECONDS,
        "traceback": "Traceback" in process.output(),
    }


# -- serve --with-worker --------------------------------------------------------------------------


async def test_deck_streams_live_through_serve_with_an_in_process_worker(
    combined_stack: Stack, alice: DeckClient
) -> None:
    deck_id, events = await create_and_watch(alice, slides=4)

    assert [event["event_type"] for event in events] == normal_life(4)
    assert_contiguous(events, first=2)
    assert slide_orders(events) == [1, 2, 3, 4]
    await assert_completed(alice, deck_id, slides=4, version=events[-1]["version"])


def test_sigterm_stops_serve_with_worker_within_seconds_with_a_clean_exit(
    combined_stack: Stack,
) -> None:
    assert stop_with_sigterm(combined_stack.serve) == CLEAN_STOP


# -- crashes --------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_deck_completes_after_its_worker_is_killed_and_a_new_worker_starts(
    deployment: Deployment, alice: DeckClient
) -> None:
    deployment.fresh()
    slow = {"offline_slide_delay_ms": "300"}
    first_worker = deployment.start_work(**slow)
    deployment.serve(**slow)
    slides = 6

    deck_id = await alice.create("Why tea matters", slide_count=slides)
    async with alice.socket(deck_id, last_version=1) as ws:
        before = await receive_events(ws, after_slides(2), timeout=60)
        assert not is_terminal(before[-1]), "the deck ended before the worker could be killed"
        assert first_worker.kill() == -9
        deployment.start_work(**slow)
        after = await receive_events(ws, is_terminal, timeout=60)

    events = before + after
    assert [event["event_type"] for event in events] == normal_life(slides)
    assert_contiguous(events, first=2)
    assert sorted(slide_orders(events)) == list(range(1, slides + 1))
    await assert_completed(alice, deck_id, slides, version=events[-1]["version"])
    response = await alice.http.get(f"/api/v1/decks/{deck_id}/events", params={"after_version": 1})
    assert response.status_code == 200, response.text
    persisted = response.json()
    assert_contiguous(persisted, first=2)
    assert [(e["version"], e["event_type"]) for e in persisted] == [
        (e["version"], e["event_type"]) for e in events
    ]
    assert sorted(slide_orders(persisted)) == list(range(1, slides + 1))


@pytest.mark.timeout(150)
async def test_stream_resumes_exactly_after_the_api_is_killed_and_restarted(
    deployment: Deployment, alice: DeckClient
) -> None:
    deployment.fresh()
    # The worker is paused while the API restarts, so its lease must outlast the restart; it
    # writes one slide at a time, so that the deck cannot end in the step that follows the kill
    # (four written at once may be stored with the completion in one step).
    slow = {
        "offline_slide_delay_ms": "300",
        "worker_lease_seconds": "60",
        "llm_concurrent_slides_per_deck": "1",
    }
    worker = deployment.start_work(**slow)
    api = deployment.serve(**slow)
    slides = 8

    deck_id = await alice.create("Why tea matters", slide_count=slides)
    async with alice.socket(deck_id, last_version=1) as ws:
        seen = await receive_events(ws, after_slides(2), timeout=60)
        assert api.kill() == -9
        seen += await drain_until_closed(ws)
    last_seen = seen[-1]["version"]
    assert not is_terminal(seen[-1]), "the deck ended before the API could be killed"

    # Events committed while no API runs must be replayed; pausing the worker once one has
    # been committed makes sure that some are replayed and some arrive live after reconnecting.
    await wait_for_deck_version(deployment.database_url, deck_id, above=last_seen)
    worker.pause()
    restarted = deployment.start_serve(**slow)
    async with asyncio.timeout(60):
        ws = await reconnect(alice, deck_id, last_version=last_seen)
    deployment.wait_until_ready(restarted)
    try:
        paused_at = await deck_version(deployment.database_url, deck_id)
        paused_deck = await alice.deck(deck_id)
        assert paused_deck["status"] == "GENERATING", "the deck ended before the worker paused"
        replayed = await receive_events(ws, lambda frame: frame["version"] >= paused_at)
        worker.resume()
        live = await receive_events(ws, is_terminal, timeout=60)
    finally:
        worker.resume()
        await ws.close()

    resumed = replayed + live
    assert_contiguous(resumed, first=last_seen + 1)
    assert live, "some events should have arrived live after reconnecting"
    assert [event["event_type"] for event in seen + resumed] == normal_life(slides)
    assert_contiguous(seen + resumed, first=2)
    await assert_completed(alice, deck_id, slides, version=resumed[-1]["version"])


async def drain_until_closed(ws: ClientConnection) -> list[Frame]:
    """Deck events still buffered on a socket whose server died, until the socket closes."""
    events: list[Frame] = []
    async with asyncio.timeout(15):
        try:
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("event_type") != "Heartbeat":
                    events.append(frame)
        except ConnectionClosed:
            return events


async def reconnect(client: DeckClient, deck_id: str, last_version: int) -> ClientConnection:
    """What a client does after a dropped connection: try again until the API answers."""
    url = f"{client.ws_url}/ws/decks/{deck_id}?token={client.token}&last_version={last_version}"
    while True:
        try:
            return await websockets.connect(url)
        except (OSError, InvalidHandshake):
            await asyncio.sleep(0.1)


async def deck_version(database_url: str, deck_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT version FROM decks WHERE id = %s", (deck_id,))
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def wait_for_deck_version(database_url: str, deck_id: str, above: int) -> None:
    async with asyncio.timeout(20):
        while await deck_version(database_url, deck_id) <= above:
            await asyncio.sleep(0.05)


def test_help_lists_dev_first_without_noise_and_version_names_the_release(
    tmp_path: Path,
) -> None:
    env = clean_environment({})
    shown = ManagedProcess.start("help", ["-h"], env, tmp_path)
    version = ManagedProcess.start("version", ["--version"], env, tmp_path)
    for process in (shown, version):
        process.wait_for_exit(timeout=60)

    commands = shown.stdout().split("Commands:", 1)[1].split()
    names = {"dev", "serve", "work", "migrate", "token", "watch"}
    listed = [word for word in commands if word in names]
    assert listed[:6] == ["dev", "serve", "work", "migrate", "token", "watch"]
    assert "<bool>" not in shown.stdout()
    assert version.stdout().strip() == f"presto-deck {__version__}"


async def test_work_serves_its_metrics_on_its_own_port(
    deployment: Deployment, separate_stack: Stack
) -> None:
    port = free_port()
    work = deployment.launch("work-metrics", "work", "--metrics-port", str(port))
    work.wait_for_log("Starting worker")
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        work.stop()

    assert answer.status_code == 200
    assert "presto_job_seconds" in answer.text
    assert "presto_queue_wait_seconds" in answer.text
