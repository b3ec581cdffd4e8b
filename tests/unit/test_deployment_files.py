"""The deployment files hold together: compose.yaml's services run the image's real commands
with real settings, in an order that works; the Dockerfile's health check exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from presto_deck.cli import app
from presto_deck.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_runs_postgres_redis_a_migration_one_api_and_one_worker() -> None:
    services = _compose()["services"]

    assert set(services) == {"postgres", "redis", "migrate", "serve", "work"}
    commands = {name: services[name]["command"][0] for name in ("migrate", "serve", "work")}
    assert commands == {"migrate": "migrate", "serve": "serve", "work": "work"}
    known = {command.callback.__name__ for command in app.registered_commands if command.callback}
    assert set(commands.values()) <= known
    for name in ("serve", "work"):
        assert services[name]["image"] == "presto-deck"
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["restart"] == "no"


def test_every_variable_compose_sets_is_a_setting_and_the_urls_name_its_services() -> None:
    services = _compose()["services"]
    fields = set(Settings.__struct_fields__)

    for name in ("migrate", "serve", "work"):
        environment = services[name]["environment"]
        for variable in environment:
            assert variable.startswith(ENV_PREFIX)
            assert variable.removeprefix(ENV_PREFIX).lower() in fields, variable
        assert "@postgres:5432/" in environment["PRESTO_DATABASE_URL"]
        assert environment["PRESTO_REDIS_URL"].startswith("redis://redis:6379/")
        assert environment["PRESTO_JWT_SECRET"].startswith("${PRESTO_JWT_SECRET:?")


def test_the_images_health_check_is_the_role_aware_module() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    check = re.search(r'HEALTHCHECK .*\n\s+CMD \["python", "-m", "([\w.]+)"\]', dockerfile)
    assert check is not None
    assert (ROOT / (check[1].replace(".", "/") + ".py")).is_file()
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", dockerfile)
    assert "uv sync --locked --no-dev --no-editable" in dockerfile
