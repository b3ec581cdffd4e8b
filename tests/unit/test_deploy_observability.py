"""The observability files under deploy/ hold together without Docker: every PromQL expression
parses and reads only series this project exports, the alert rules have what Prometheus
requires, the dashboard's panels are well formed, and the compose override wires Prometheus,
Grafana, the collector and Jaeger to files that exist and to the ports the processes use."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from presto_deck.cli import work
from presto_deck.domain.deck import DeckStatus

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "presto-deck.json"
#: Grafana's built-in variables ($__rate_interval, ${__interval}, ...) are durations in the
#: expressions of this dashboard; Prometheus would get Grafana's value in their place.
GRAFANA_VARIABLE = re.compile(r"\$\{?__\w+\}?")
#: The series Prometheus adds to every scrape itself.
SCRAPE_SERIES = {"up"}
#: The suffixes of the series a family of each type exposes.
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}
#: The keys Prometheus accepts in a rule group and in an alerting rule (it rejects others).
GROUP_KEYS = {"name", "interval", "limit", "query_offset", "rules"}
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"]]


def _panels() -> Iterator[dict[str, Any]]:
    """Every panel, the rows included, and those a collapsed row holds."""
    for panel in _dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and every dashboard target, ready for a parser."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in _alert_rules()]
    for panel in _panels():
        for target in panel.get("targets", []):
            expr = GRAFANA_VARIABLE.sub("5m", target["expr"])
            found.append((f"panel {panel['title']!r} target {target['refId']}", expr))
    return found


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _exported_series() -> set[str]:
    # Importing the module registers the project's metrics in the default registry.
    importlib.import_module("presto_deck.infrastructure.observability.metrics")
    names = set(SCRAPE_SERIES)
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
        # Families of other types (info, summary) are covered by the samples they have.
        names.update(sample.name for sample in family.samples)
    return names


def _scrape_addresses(scrape: dict[str, Any]) -> set[str]:
    """host:port of a scrape job, whether its targets are static or found by DNS."""
    addresses = {
        target for config in scrape.get("static_configs", []) for target in config["targets"]
    }
    for config in scrape.get("dns_sd_configs", []):
        addresses.update(f"{name}:{config['port']}" for name in config["names"])
    return addresses


def _prometheus() -> dict[str, Any]:
    loaded: dict[str, Any] = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    return loaded


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    return {scrape["job_name"]: scrape for scrape in _prometheus()["scrape_configs"]}


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[1]


@pytest.mark.parametrize(
    "path",
    sorted(path for path in DEPLOY.rglob("*") if path.suffix in {".yaml", ".yml", ".json"}),
    ids=lambda path: str(path.relative_to(DEPLOY)),
)
def test_every_file_parses(path: Path) -> None:
    loaded = json.loads(path.read_text()) if path.suffix == ".json" else _yaml(path)

    assert isinstance(loaded, dict)


@pytest.mark.parametrize("expr", [pytest.param(expr, id=where) for where, expr in _expressions()])
def test_every_expression_parses(expr: str) -> None:
    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        pytest.fail(f"{exc}: {expr}")


def test_every_series_an_expression_reads_is_one_this_project_exports() -> None:
    exported = _exported_series()
    # One assertion over all the expressions, so that a failure names every missing series.
    missing = {
        f"{selector.name} ({where})"
        for where, expr in _expressions()
        for selector in _selectors(expr)
        if selector.name not in exported
    }

    assert not missing, f"not in the registry: {sorted(missing)}"


def test_the_deck_statuses_expressions_match_are_ones_the_worker_records() -> None:
    # The worker labels finished decks with DeckStatus values; a misspelt one matches nothing.
    statuses = {status.value for status in DeckStatus}
    matched = {
        matcher.value
        for _, expr in _expressions()
        for selector in _selectors(expr)
        if selector.name == "presto_decks_finished_total"
        for matcher in selector.matchers.matchers
        if matcher.name == "status" and matcher.op == promql_parser.MatchOp.Equal
    }

    assert matched
    assert matched <= statuses


def test_the_alert_rules_have_what_prometheus_requires() -> None:
    groups = _yaml(ALERTS)["groups"]

    names = [group["name"] for group in groups]
    assert len(names) == len(set(names))
    alerts = [rule["alert"] for rule in _alert_rules()]
    assert len(alerts) == len(set(alerts))
    for group in groups:
        assert set(group) <= GROUP_KEYS, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, rule.get("alert")
            assert rule["alert"]
            assert rule["expr"].strip()
            # A duration such as 5m; a bare number or "5 minutes" is rejected.
            promql_parser.parse_duration(rule["for"])
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"].strip()
            assert rule["annotations"]["description"].strip()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH")
def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None

    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_well_formed() -> None:
    dashboard = _dashboard()
    panels = list(_panels())

    assert (dashboard["uid"], dashboard["title"], dashboard["schemaVersion"]) == (
        "presto-deck",
        "Presto-Deck",
        39,
    )
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert min(grid["w"], grid["h"], grid["x"] + 1) > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]


def test_no_two_panels_of_the_dashboard_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} covers {cells.get((x, y))!r}"
                cells[x, y] = panel["title"]


def test_prometheus_scrapes_the_api_and_the_worker_and_loads_the_alerts() -> None:
    config = _prometheus()
    jobs = _scrape_jobs()

    assert config["rule_files"] == ["alerts.yml"]
    assert (DEPLOY / "prometheus" / "alerts.yml").is_file()
    assert _scrape_addresses(jobs["presto-deck-api"]) == {"serve:8000"}
    assert _scrape_addresses(jobs["presto-deck-worker"]) == {"work:9100"}
    for scrape in jobs.values():
        assert scrape.get("metrics_path", "/metrics") == "/metrics"


def test_the_alerts_on_up_name_the_scrape_jobs() -> None:
    jobs = _scrape_jobs()
    up_jobs = [
        (where, matcher)
        for where, expr in _expressions()
        for selector in _selectors(expr)
        if selector.name == "up"
        for matcher in selector.matchers.matchers
        if matcher.name == "job"
    ]

    assert up_jobs
    for where, matcher in up_jobs:
        pattern = (
            matcher.value if matcher.op == promql_parser.MatchOp.Re else re.escape(matcher.value)
        )
        assert any(re.fullmatch(pattern, job) for job in jobs), where


def test_the_compose_override_adds_pinned_services_with_files_that_exist() -> None:
    base = _yaml(ROOT / "compose.yaml")["services"]
    override = _yaml(DEPLOY / "compose.observability.yaml")
    services = override["services"]
    added = set(services) - set(base)

    assert set(services) & set(base) == {"serve", "work"}
    assert added == {"prometheus", "grafana", "otel-collector", "jaeger"}
    for name in added:
        service = services[name]
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), image
        assert not image.endswith(":latest"), image
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every address"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                # Compose resolves an override's paths from the first file's folder: the root.
                assert (ROOT / source).exists(), f"{name} mounts {source}"
            else:
                assert source in override["volumes"], f"{name} mounts {source}"


def test_the_api_and_the_worker_send_traces_to_the_collector() -> None:
    services = _yaml(DEPLOY / "compose.observability.yaml")["services"]
    collector = _yaml(DEPLOY / "otel-collector.yaml")
    http_port = _port(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])

    for name, service_name in (("serve", "presto-deck-api"), ("work", "presto-deck-worker")):
        environment = services[name]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{http_port}"
        assert environment["OTEL_SERVICE_NAME"] == service_name
        assert "otel-collector" in services[name]["depends_on"]


def test_the_worker_serves_its_metrics_where_prometheus_scrapes_them() -> None:
    command = _yaml(DEPLOY / "compose.observability.yaml")["services"]["work"]["command"]
    parameters = inspect.signature(work).parameters
    (scraped,) = _scrape_addresses(_scrape_jobs()["presto-deck-worker"])

    assert command[0] == "work"
    assert {"metrics_port", "metrics_host"} <= set(parameters)
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options == {"--metrics-port": _port(scraped), "--metrics-host": "0.0.0.0"}


def test_grafana_provisions_prometheus_and_the_dashboard() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = _yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    (provider,) = _yaml(provisioning / "dashboards" / "presto-deck.yaml")["providers"]
    grafana = _yaml(DEPLOY / "compose.observability.yaml")["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])

    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    dashboard_in_container = Path(mounts[f"./{DASHBOARD.relative_to(ROOT)}"])
    assert dashboard_in_container.parent == Path(provider["options"]["path"])


def test_the_collector_sends_its_traces_to_jaeger() -> None:
    collector = _yaml(DEPLOY / "otel-collector.yaml")
    services = _yaml(DEPLOY / "compose.observability.yaml")["services"]
    pipeline = collector["service"]["pipelines"]["traces"]

    protocols = collector["receivers"]["otlp"]["protocols"]
    assert (protocols["http"]["endpoint"], protocols["grpc"]["endpoint"]) == (
        "0.0.0.0:4318",
        "0.0.0.0:4317",
    )
    assert set(pipeline["receivers"]) <= set(collector["receivers"])
    assert set(pipeline["processors"]) <= set(collector["processors"])
    assert set(pipeline["exporters"]) <= set(collector["exporters"])
    assert pipeline["exporters"] == ["otlp/jaeger"]
    jaeger = collector["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317"
    assert jaeger["tls"]["insecure"] is True
    assert "jaeger" in services


def test_the_operations_guide_says_what_to_do_for_every_alert() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()

    missing = [rule["alert"] for rule in _alert_rules() if f"`{rule['alert']}`" not in guide]
    assert not missing
