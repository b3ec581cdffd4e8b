"""Each role builds what it uses and nothing else: an API builds no writer (no model client),
so a model setting only the worker can use never stops an API from starting."""

from __future__ import annotations

import pytest

from presto_deck.bootstrap import Role, build_container
from presto_deck.settings import Settings, SettingsError

#: A model whose client cannot be built: only a process that writes may refuse it.
_UNUSABLE_MODEL = Settings(
    database_url="postgresql://nowhere/x",
    redis_url="redis://127.0.0.1:1/0",
    llm_model="no-such-provider:some-model",
)


async def test_the_api_role_builds_the_api_and_no_writer() -> None:
    container = build_container(_UNUSABLE_MODEL, Role.API)
    try:
        assert container.api is not None
        assert container.worker is None
        with pytest.raises(RuntimeError, match="api role"):
            container.worker_role()
    finally:
        await container.close()


@pytest.mark.parametrize("role", [Role.WORKER, Role.BOTH])
def test_a_role_that_writes_refuses_a_model_it_cannot_build(role: Role) -> None:
    with pytest.raises(SettingsError, match="PRESTO_LLM_MODEL=no-such-provider:some-model"):
        build_container(_UNUSABLE_MODEL, role)


async def test_the_worker_role_builds_no_api() -> None:
    settings = Settings(database_url="postgresql://nowhere/x", redis_url="redis://127.0.0.1:1/0")
    container = build_container(settings, Role.WORKER)
    try:
        assert container.worker is not None
        assert container.api is None
    finally:
        await container.close()


@pytest.mark.parametrize(
    ("role", "pinged"), [(Role.API, True), (Role.BOTH, True), (Role.WORKER, False)]
)
async def test_only_a_process_that_answers_requests_tests_its_connections_before_use(
    role: Role, pinged: bool
) -> None:
    """A request must not fail on a connection the server dropped; a worker, which tries its
    transactions again anyway, saves that round trip on each of them."""
    settings = Settings(database_url="postgresql://nowhere/x", redis_url="redis://127.0.0.1:1/0")
    container = build_container(settings, role)
    try:
        assert container.engine.pool._pre_ping is pinged
    finally:
        await container.close()
