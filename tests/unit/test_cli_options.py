"""Options the CLI refuses before it starts anything: a port outside 1-65535 would otherwise be
taken modulo 65536 by the socket layer and the printed address would be wrong."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from presto_deck.cli import app


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "80001"],
        ["serve", "--port", "0"],
        ["dev", "--port", "65536"],
        ["work", "--metrics-port", "70000"],
    ],
)
def test_a_port_outside_the_valid_range_is_refused_in_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    assert "Invalid value for '--" in result.output
    assert "65535" in result.output or "greater than or equal to 1" in result.output
    assert "Traceback" not in result.output
