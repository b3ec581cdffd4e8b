"""What the tests of LLM writing share: the API key the fake server is called with, and
stamina's test mode, in which every retry backoff is zero."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import stamina

API_KEY = "test-key"
#: How many slides the plans of the shared ``fake_openai`` server have.
PLAN_SLIDES = 3


@contextlib.contextmanager
def no_retry_backoff() -> Iterator[None]:
    # Test mode makes every backoff zero; cap=True keeps each writer's own max_attempts.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield
