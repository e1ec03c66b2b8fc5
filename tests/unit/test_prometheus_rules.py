"""The worker's alerting rules and dashboard: checked by Prometheus's own promtool, and
every metric they name is one the worker exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from framedrift.worker.ops.metrics import REGISTRY

DEPLOY = Path(__file__).parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "framedrift-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "framedrift-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "framedrift-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus); .ci/run installs it",
)


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *arguments], capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_rules_are_valid_prometheus_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_each_rule_fires_where_it_should_and_not_where_it_should_not() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


# The series a metric family exports, by its type: before any label value is seen, a
# labelled family has no samples to ask.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    """Every series name the worker's registry exports."""
    return {
        metric.name + suffix for metric in REGISTRY.collect() for suffix in SUFFIXES[metric.type]
    }


def framedrift_names(text: str) -> set[str]:
    return set(re.findall(r"\bframedrift_[a-z_]+\b", text))


def test_the_rules_name_only_metrics_the_worker_exports() -> None:
    unknown = framedrift_names(RULES.read_text()) - exported_names()
    assert not unknown, f"the rules use metrics no worker exports: {sorted(unknown)}"


def test_the_dashboard_shows_only_metrics_the_worker_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    # The panels' queries and the $job variable's, which lists the jobs from a metric too.
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [
        variable["definition"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    used = set().union(*(framedrift_names(query) for query in queries))
    unknown = used - exported_names()
    assert not unknown, f"the dashboard uses metrics no worker exports: {sorted(unknown)}"
    assert {"framedrift_incidents_open", "framedrift_lag_records"} <= used
