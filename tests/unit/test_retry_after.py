"""A provider's Retry-After header is untrusted input: only a finite, sensible wait is used."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from presto_deck.infrastructure.writers.langchain import _MAX_RETRY_AFTER_SECONDS, _retry_wait


def _rate_limited(**headers: str) -> Exception:
    error = Exception("rate limited")
    error.status_code = 429  # type: ignore[attr-defined]
    error.response = SimpleNamespace(headers=headers)  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "86400"}, _MAX_RETRY_AFTER_SECONDS),
        ({"retry-after-ms": "-40"}, 0.0),
    ],
)
def test_a_sensible_retry_after_sets_the_wait(headers: dict[str, str], wait: float) -> None:
    assert _retry_wait(_rate_limited(**headers)) == wait


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after-ms": "nan"},
        {"retry-after-ms": "inf"},
        {"retry-after-ms": "-inf"},
        {"retry-after-ms": "1e400"},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "Wed, 99 Foo 2026 25:61:61 GMT"},
        {},
    ],
)
def test_a_retry_after_that_makes_no_sense_falls_back_to_the_backoff(
    headers: dict[str, str],
) -> None:
    wait = _retry_wait(_rate_limited(**headers))

    assert wait is True  # retried, after the usual exponential backoff
    assert not isinstance(wait, float) or math.isfinite(wait)
