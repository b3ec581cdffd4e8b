"""The package as it is installed from a wheel (as the image installs it), not from a checkout:
it finds its default settings and its migrations inside itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from presto_deck.infrastructure.db.migrations import head_revision
from tests.e2e.conftest import empty_database

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv builds the wheel"),
]


def test_a_wheel_carries_its_defaults_and_migrations_and_migrates_a_database(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("presto_deck-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert "presto_deck/config/defaults.toml" in names
    assert "presto_deck/migrations/env.py" in names
    assert any(name.startswith("presto_deck/migrations/versions/0001") for name in names)
    assert "presto_deck/themes/default.toml" in names

    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing can be found beside it
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PRESTO_")} | {
        "PYTHONPATH": str(tmp_path / "site"),
        "PRESTO_REDIS_URL": "redis://127.0.0.1:9/0",
    }
    program = "import presto_deck.cli as cli; print(cli.__file__, flush=True); cli.app()"
    with empty_database() as url:
        migrated = subprocess.run(
            [sys.executable, "-c", program, "migrate"],
            cwd=elsewhere,
            env=env | {"PRESTO_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert migrated.returncode == 0, migrated.stderr
    where, said = migrated.stdout.splitlines()
    assert where.startswith(str(tmp_path / "site"))
    assert said == f"database migrated from schema revision none to {head_revision()}"
