"""Credentials never reach a log line: tokens in query strings, however they are encoded, in
Authorization headers, and bare JWTs."""

from __future__ import annotations

import logging
import sys

import jwt
import pytest
from loguru import logger

from presto_deck.infrastructure.observability.logging import configure_logging, redact

TOKEN = jwt.encode({"sub": "alice", "exp": 4102444800}, "k" * 32, algorithm="HS256")
SIGNATURE = TOKEN.rsplit(".", 1)[1]


def percent_encoded(text: str) -> str:
    """Every byte as %XX: what a URL parser decodes back to ``text``."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


def access_line(target: str) -> str:
    """An access log line as uvicorn writes it for a request to ``target``."""
    return f'127.0.0.1:50000 - "GET {target} HTTP/1.1" 200'


@pytest.mark.parametrize(
    "query",
    [
        f"token={TOKEN}",
        f"%74oken={TOKEN}",
        f"t%6Fk%65n={TOKEN}",
        f"token={percent_encoded(TOKEN)}",
        f"%74oken={percent_encoded(TOKEN)}",
        f"{percent_encoded('token')}={percent_encoded(TOKEN)}",
        f"TOKEN={percent_encoded(TOKEN)}",
        f"last_version=3&%74oken={percent_encoded(TOKEN)}",
        f"token=x&token={percent_encoded(TOKEN)}",
    ],
    ids=[
        "plain",
        "encoded name",
        "partly encoded name",
        "encoded value",
        "encoded name and value",
        "all encoded",
        "upper case name",
        "second parameter",
        "repeated name",
    ],
)
def test_the_value_of_a_token_parameter_is_redacted_however_it_is_encoded(query: str) -> None:
    line = redact(access_line(f"/ws/decks/d?{query}"))

    assert SIGNATURE not in line
    assert percent_encoded(SIGNATURE) not in line
    assert "[redacted" in line


def test_a_jwt_in_another_parameter_is_redacted_even_percent_encoded() -> None:
    line = redact(access_line(f"/api/v1/decks?access={percent_encoded(TOKEN)}"))

    assert percent_encoded(SIGNATURE) not in line


def test_other_parameters_and_the_line_around_them_are_kept() -> None:
    line = redact('127.0.0.1:1 - "WebSocket /ws/decks/d?last_version=3&%74oken=abc.def"')

    assert line == '127.0.0.1:1 - "WebSocket /ws/decks/d?last_version=3&%74oken=[redacted]"'


def test_a_bearer_header_and_a_bare_jwt_are_redacted() -> None:
    line = redact(f"Authorization: Bearer {TOKEN} and later {TOKEN}")

    assert SIGNATURE not in line


def test_a_text_line_shows_its_context_only_when_it_has_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root_handlers = logging.root.handlers[:]
    configure_logging("text", "INFO")
    try:
        logger.info("plain")
        logger.bind(deck_id="d-1").info("about a deck")
        logging.getLogger("alembic.runtime.plugins").info("setup plugin x")
    finally:  # back to loguru's and logging's defaults, for the tests that follow
        logger.remove()
        logger.add(sys.stderr)
        logging.root.handlers = root_handlers

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" plain")
    assert lines[1].endswith(" about a deck {'deck_id': 'd-1'}")
