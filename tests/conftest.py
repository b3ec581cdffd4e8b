"""Fixtures shared by the integration and end-to-end tests: real PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from presto_deck.infrastructure.tokens import TokenVerifier
from presto_deck.settings import Settings, load_settings
from tests.support.client import DeckClient
from tests.support.llm import no_retry_backoff
from tests.support.processes import OVERDUE_SHUTDOWNS
from tests.support.running import RunningApi, running_api, running_worker
from tests.support.services import (
    TEST_REDIS_URL,
    flush_redis,
    reset_database,
    temporary_database,
)

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"
#: Abuse limits far above what any test does, so that only the tests of the limits meet them
#: (they set low ones of their own).
UNREACHED_LIMITS = {
    "limit_deck_creations_per_minute": 100_000,
    "limit_active_decks_per_user": 100_000,
    "limit_sockets_per_user": 100_000,
    "limit_sockets_total": 100_000,
    "limit_frames_per_second": 100_000,
    "limit_exports_per_minute": 100_000,
    "limit_theme_changes_per_minute": 100_000,
}


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retry backoffs are zero (use with ``pytestmark = pytest.mark.usefixtures("no_backoff")``)."""
    with no_retry_backoff():
        yield


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Iterator[Settings]:
    """Settings on a clean database and Redis db, tuned so that tests run fast."""
    reset_database(database_url)
    flush_redis(TEST_REDIS_URL)
    yield load_settings(
        environ={},
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        jwt_secret=JWT_SECRET,
        offline_slide_delay_ms=0,
        ws_heartbeat_seconds=1,
        worker_lease_seconds=2,
        worker_sweep_seconds=1,
        log_format="text",
        log_level="WARNING",
        # One slide at a time: the tests that hold or script the writer count on its calls
        # coming in the slides' order. Slides written at once have tests of their own, and the
        # end-to-end and fault suites run the processes with the defaults.
        llm_concurrent_slides_per_deck=1,
        **UNREACHED_LIMITS,
    )
    flush_redis(TEST_REDIS_URL)


def token_for(settings: Settings, user_id: str, ttl: int = 3600) -> str:
    return TokenVerifier(settings).mint(user_id, ttl)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[None]:
    async with running_worker(settings):
        yield


@pytest.fixture
async def alice(api: RunningApi, settings: Settings) -> AsyncIterator[DeckClient]:
    client = DeckClient(api.url, api.ws_url, token_for(settings, "alice"))
    yield client
    await client.aclose()


@pytest.fixture
async def bob(api: RunningApi, settings: Settings) -> AsyncIterator[DeckClient]:
    client = DeckClient(api.url, api.ws_url, token_for(settings, "bob"))
    yield client
    await client.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the workers that had to exit on their shutdown deadline, with what they waited on."""
    if OVERDUE_SHUTDOWNS:
        terminalreporter.write_sep("-", "workers that overran their shutdown deadline")
        for report in OVERDUE_SHUTDOWNS:
            terminalreporter.write_line(report)
