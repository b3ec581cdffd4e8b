"""The image's health check follows the container's role."""

from __future__ import annotations

import pytest

from presto_deck.healthcheck import url_to_check


@pytest.mark.parametrize(
    ("argv", "url"),
    [
        (
            ["/app/.venv/bin/presto-deck", "serve", "--host", "0.0.0.0", "--port", "8000"],
            "http://127.0.0.1:8000/health/live",
        ),
        (
            ["presto-deck", "serve", "--port=9000", "--with-worker"],
            "http://127.0.0.1:9000/health/live",
        ),
        (["presto-deck", "dev", "--host", "0.0.0.0"], "http://127.0.0.1:8000/health/live"),
        (["presto-deck", "work"], None),
        (["presto-deck", "migrate"], None),
    ],
)
def test_the_check_asks_the_port_of_a_role_that_serves_and_nothing_of_one_that_does_not(
    argv: list[str], url: str | None
) -> None:
    assert url_to_check(argv) == url
