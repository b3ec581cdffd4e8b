"""Fixtures shared by several integration test modules (tests/conftest.py has the common ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from presto_deck.bootstrap import Container, build_container
from presto_deck.settings import Settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.llm import PLAN_SLIDES


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    """A container of our own on the test's settings, as a worker or an API instance builds it."""
    built = build_container(settings)
    yield built
    await built.close()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server whose plans have ``PLAN_SLIDES`` slides.

    A fresh server (so a fresh base URL) per test: langchain-openai caches one HTTP client per
    base URL per process, and its connections belong to the event loop that opened them.
    """
    with FakeOpenAI(plan_slides=PLAN_SLIDES) as server:
        yield server
