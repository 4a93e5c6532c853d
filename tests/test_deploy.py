"""Deployment files (``deploy/``) and the metrics reference (``docs/metrics.md``).

The dashboard, the alert rules and the docs name metrics by string; nothing but these tests
notices when ``streamer/metrics.py`` renames one. Metric names come from the module's metric
objects, so the check follows the code. When ``promtool`` is installed (Debian package
``prometheus``) the Prometheus files and every dashboard query are also checked by it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from streamer import metrics
from vigil.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "vigil-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
EXAMPLE_CONFIG = DEPLOY / "vigil.example.yaml"

# Series each metric type exposes in multiprocess mode (no `_created` there).
SERIES_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
PROMTOOL_TIMEOUT_S = 60

_METRIC_NAME = re.compile(r"\bvigil_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(vigil_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class DefinedMetric:
    """A metric of ``streamer.metrics`` as PromQL sees it."""

    family: str  # the name users read: vigil_frames_read_total, vigil_event_latency_seconds
    series: frozenset[str]
    labels: frozenset[str]


def defined_metrics() -> list[DefinedMetric]:
    found = []
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        (description,) = value.describe()
        suffixes = SERIES_SUFFIXES[description.type]
        series = frozenset(description.name + suffix for suffix in suffixes)
        family = description.name + ("_total" if description.type == "counter" else "")
        labels = frozenset(value._labelnames) | ({"le"} if description.type == "histogram" else set())
        found.append(DefinedMetric(family, series, frozenset(labels)))
    return sorted(found, key=lambda metric: metric.family)


METRICS = defined_metrics()
SERIES = {name: metric for metric in METRICS for name in metric.series}


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """PromQL of every panel target (template variables are not PromQL: see below)."""
    return [target["expr"] for panel in dashboard_panels(dashboard) for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def all_queries() -> list[tuple[str, str]]:
    """``(where, query)`` for every dashboard query, template variable query and alert rule."""
    dashboard = load_dashboard()
    queries = [
        (f"panel {panel['title']} {target['refId']}", target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    queries += [
        (f"dashboard variable {variable['name']}", variable["definition"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    queries += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return queries


QUERIES = all_queries()


def as_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced by what they stand for."""
    return query.replace("$__rate_interval", "1m").replace("$instance", ".*").replace("$camera", ".*")


def label_values_written_by_streamer() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted((ROOT / "streamer").glob("*.py")))


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_S, check=False
    )


# -- files parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda path: str(path.relative_to(DEPLOY))
)
def test_yaml_parses(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents and all(document is not None for document in documents), f"{path} has an empty document"


def test_metrics_module_defines_metrics() -> None:
    # guards the tests below: finding no metrics would make them pass vacuously
    assert len(METRICS) >= 15, f"found only {[metric.family for metric in METRICS]} in streamer.metrics"


# -- names used in queries exist -----------------------------------------------------------


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[where for where, _ in QUERIES])
def test_queries_use_defined_metrics_and_labels(where: str, query: str) -> None:
    # given the metric names a query selects
    names = _METRIC_NAME.findall(query)
    # (Prometheus' own `up` is the one other series worth alerting on)
    assert names or query.startswith("up{"), f"{where} selects no vigil metric: {query}"
    # then each is a series that streamer.metrics exposes
    unknown = sorted(set(names) - set(SERIES))
    assert not unknown, f"{where} uses {unknown}, which streamer.metrics does not expose"
    # and every label it matches or groups on belongs to the metrics it uses
    allowed = TARGET_LABELS.union(*(SERIES[name].labels for name in names))
    for name, matchers in _SELECTOR.findall(query):
        for label, _, _ in _MATCHER.findall(matchers):
            assert label in SERIES[name].labels | TARGET_LABELS, f"{where}: {name} has no label {label!r}"
    for grouping in _GROUPING.findall(query):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= allowed, f"{where} groups on {sorted(labels - allowed)}, not labels of {names}"


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[where for where, _ in QUERIES])
def test_queries_match_label_values_the_code_writes(where: str, query: str) -> None:
    # given the exact label values a query matches (state="live", reason="redis", ...)
    source = label_values_written_by_streamer()
    for _, matchers in _SELECTOR.findall(query):
        for label, operator, value in _MATCHER.findall(matchers):
            if operator != "=" or "$" in value:
                continue
            # then the streamer code writes that value somewhere (a typo matches nothing)
            assert f'"{value}"' in source, f"{where}: no code in streamer/ writes {label}={value!r}"


# -- the dashboard -------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36, "Grafana 9+ dashboards use schemaVersion 36 or later"
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    camera = variables["camera"]["definition"]
    assert camera.startswith("label_values(vigil_frames_read_total") and camera.endswith(", camera)"), camera
    panels = dashboard_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        if panel["type"] == "row":
            continue
        # one datasource variable for all panels, so import and provisioning both work
        sources = [panel["datasource"], *(target["datasource"] for target in panel["targets"])]
        assert all(source["uid"] == "${DS_PROMETHEUS}" for source in sources), panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"


@pytest.mark.parametrize(
    "metric",
    [
        "vigil_frames_read_total",  # frames read per camera
        "vigil_frames_processed_total",
        "vigil_frames_dropped_total",
        "vigil_faces_detected_total",
        "vigil_recognitions_total",  # recognitions by outcome
        "vigil_events_published_total",  # events by type
        "vigil_event_latency_seconds_bucket",  # capture-to-event p50/p99
        "vigil_stage_seconds_bucket",  # per-stage p99
        "vigil_batch_frames_count",  # batch size
        "vigil_bus_backlog_frames",
        "vigil_source_state",
        "vigil_source_reconnects_total",
        "vigil_process_restarts_total",
        "vigil_redis_errors_total",
        "vigil_index_templates",
        "vigil_gallery_version",
    ],
)
def test_dashboard_shows(metric: str) -> None:
    queries = dashboard_queries(load_dashboard())
    assert any(re.search(rf"\b{metric}\b", query) for query in queries), f"no dashboard panel shows {metric}"


# -- docs/metrics.md -----------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS, ids=lambda metric: metric.family)
def test_every_metric_is_documented_with_its_labels(metric: DefinedMetric) -> None:
    # given the metrics table of docs/metrics.md, one row per metric
    rows = [
        line for line in METRICS_DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `vigil_")
    ]
    row = next((line for line in rows if line.startswith(f"| `{metric.family}` |")), None)
    # then the metric has a row that names each of its labels
    assert row is not None, f"{metric.family} is missing from the table in {METRICS_DOC}"
    missing = sorted(label for label in metric.labels - {"le"} if f"`{label}`" not in row)
    assert not missing, f"the row of {metric.family} does not name its labels {missing}"


def test_docs_name_only_defined_metrics() -> None:
    names = set(_METRIC_NAME.findall(METRICS_DOC.read_text(encoding="utf-8")))
    known = set(SERIES) | {metric.family for metric in METRICS}
    assert not names - known, f"docs/metrics.md names metrics that do not exist: {sorted(names - known)}"


# -- configuration -------------------------------------------------------------------------


def test_example_config_validates() -> None:
    # when the example is loaded like `vigil --config deploy/vigil.example.yaml run`
    settings = load_settings(EXAMPLE_CONFIG, environ={})
    # then it has the two cameras it describes, and metrics Prometheus can reach
    sources = [camera.source for camera in settings.streamer.cameras]
    assert len(sources) == 2 and sources[0].startswith("rtsp://") and "://" not in sources[1], sources
    assert settings.streamer.metrics.host == "0.0.0.0"


def test_kubernetes_configmap_config_validates(tmp_path: Path) -> None:
    configmap = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text(encoding="utf-8"))
    config = tmp_path / "vigil.yaml"
    config.write_text(configmap["data"]["vigil.yaml"], encoding="utf-8")
    settings = load_settings(config, environ={})
    assert settings.streamer.cameras, "the ConfigMap's configuration has no cameras"


def load_kubernetes(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "kubernetes" / name).read_text(encoding="utf-8"))
    return document


@pytest.mark.parametrize(
    "name",
    [
        "deployment.yaml",  # `vigil run`
        "worker-deployment.yaml",  # `vigil worker` nodes
    ],
)
def test_kubernetes_deployment_refers_to_the_other_manifests(name: str) -> None:
    deployment, service = load_kubernetes(name), load_kubernetes("service.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    # the Deployment owns its pods, and the metrics Service selects them
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # the Service targets the metrics port, whose number Prometheus is told
    port_numbers = {port["name"]: port["containerPort"] for port in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in port_numbers
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port_numbers["metrics"])
    # the ConfigMap and the Secret it mounts and reads are the ones in this folder
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == load_kubernetes("configmap.yaml")["metadata"]["name"]
    redis_url = next(env for env in container["env"] if env["name"] == "REDIS_URL")
    secret = load_kubernetes("secret.example.yaml")["metadata"]["name"]
    assert redis_url["valueFrom"]["secretKeyRef"]["name"] == secret


def test_kubernetes_deployments_do_not_select_each_others_pods() -> None:
    vigil_run = load_kubernetes("deployment.yaml")
    workers = load_kubernetes("worker-deployment.yaml")
    run_pods = vigil_run["spec"]["template"]["metadata"]["labels"]
    assert not workers["spec"]["selector"]["matchLabels"].items() <= run_pods.items()
    worker_pods = workers["spec"]["template"]["metadata"]["labels"]
    assert not vigil_run["spec"]["selector"]["matchLabels"].items() <= worker_pods.items()
    # exactly one `vigil run` per Redis (deploy/README.md, Scaling)
    assert vigil_run["spec"]["replicas"] == 1 and vigil_run["spec"]["strategy"]["type"] == "Recreate"


def test_compose_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"redis", "vigil", "prometheus", "grafana"} <= services.keys()
    assert services["vigil"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            # ./videos holds the user's recordings and is not part of the repository
            if source.startswith("./") and source != "./videos":
                assert (DEPLOY / source).exists(), f"service {name} mounts {source}, which does not exist"
    # Grafana's dashboard provider reads the folder the compose file mounts the dashboard in
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "vigil.yml").read_text(encoding="utf-8")
    )
    (dashboards,) = provider["providers"]
    mounts = [volume.split(":")[1] for volume in services["grafana"]["volumes"]]
    assert f"{dashboards['options']['path']}/{DASHBOARD.name}" in mounts


def test_dockerfile_copies_what_the_build_context_keeps() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    kept = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    sources = [
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert f"!{source.rstrip('/')}" in kept or f"!{source.rstrip('/')}/" in kept, (
            f"Dockerfile.dockerignore leaves {source} out of the build context"
        )


# -- promtool (when installed) -------------------------------------------------------------


def test_promtool_checks_config_and_rules() -> None:
    result = run_promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_alert_unit_tests() -> None:
    result = run_promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_parses_dashboard_queries(tmp_path: Path) -> None:
    # given every dashboard query as a recording rule (promtool parses rule expressions)
    queries = dashboard_queries(load_dashboard())
    rules = [{"record": f"vigil_dashboard:query_{n}", "expr": as_promql(q)} for n, q in enumerate(queries)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    # when promtool checks them, then all parse
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
