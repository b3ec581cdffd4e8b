"""What the tests of LLM writing share: the API key the fake server is called with, and
stamina's test mode, in which every retry backoff is zero."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import stamina

from presto_deck.application.ports import ModelCallsExhausted

API_KEY = "test-key"
#: How many slides the plans of the shared ``fake_openai`` server have.
PLAN_SLIDES = 3


@contextlib.contextmanager
def no_retry_backoff() -> Iterator[None]:
    # Test mode makes every backoff zero; cap=True keeps each writer's own max_attempts.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class CountingBudget:
    """A model-call budget that counts the calls a writer makes and refuses those past ``limit``."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.spent = 0

    async def spend(self) -> None:
        if self.limit is not None and self.spent >= self.limit:
            raise ModelCallsExhausted(f"all {self.limit} calls are spent")
        self.spent += 1
