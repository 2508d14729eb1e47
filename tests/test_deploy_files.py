"""The deployment files shipped in deploy/, the Procfile and `make stack`, checked without a server.

Prometheus' files are checked with promtool when it is installed (Debian: apt-get install
prometheus), and in any case parsed here: every metric an alert names must be one the code
defines. The environment file lists every setting the code reads; the systemd units all have
an [Install] section and agree with each other and with the scrape configuration.
"""

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "scoreboard.env.example"

# Series Prometheus (and its blackbox exporter) makes itself, not the service.
PROMETHEUS_OWN_SERIES = {"up", "probe_success"}
# Settings that only matter without PostgreSQL (make run), so a production file leaves them out.
NOT_FOR_PRODUCTION = {"SQLITE_PATH", "CATALOG_FILE"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "inf", "nan",
}  # fmt: skip


def code_files():
    """The Python files that read settings or define metrics: config, entry points, the packages."""
    files = [ROOT / name for name in ("config.py", "gunicorn.conf.py", "celery_app.py", "wsgi.py")]
    for package in ("scoreboard", "workers"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if f.exists()]


def defined_series():
    """Every series name the service exposes, from the metric definitions in its code."""
    series = set()
    pattern = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*[\"'](scoreboard_\w+)[\"']")
    for path in code_files():
        for kind, name in pattern.findall(path.read_text()):
            if kind == "Counter":
                base = name.removesuffix("_total")
                series |= {f"{base}_total", f"{base}_created"}
            elif kind == "Gauge":
                series.add(name)
            else:
                series |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    assert series, "no metric definitions found in the code"
    return series


def metric_names(expr):
    """The series names a PromQL expression selects (not its functions, keywords or labels)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def load_yaml(path):
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(path.read_text())


def alert_rules():
    rules = [rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]]
    assert rules
    return rules


# --- Prometheus ---------------------------------------------------------------------------------------


def test_scrape_config_scrapes_web_and_worker_and_loads_the_alerts():
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"scoreboard-web", "scoreboard-worker"} <= set(jobs)
    for name in ("scoreboard-web", "scoreboard-worker"):
        assert jobs[name].get("metrics_path", "/metrics") == "/metrics"
        assert jobs[name]["static_configs"][0]["targets"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file


def test_every_alert_expression_names_metrics_the_service_defines():
    series = defined_series()
    for rule in alert_rules():
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["labels"].get("severity") and rule["annotations"].get("summary"), rule["alert"]
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        unknown = names - series - PROMETHEUS_OWN_SERIES
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not defined by the service"


def test_the_metric_name_parser():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(scoreboard_broadcast_lag_seconds_bucket{a="b"}[5m]))) > 1'
    assert metric_names(expr) == {"scoreboard_broadcast_lag_seconds_bucket"}
    assert metric_names("sum(x offset 1h) > 100 and up == 0") == {"x", "up"}


def test_the_alerts_cover_the_documented_ones():
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    for metric in (
        "scoreboard_outbox_pending",
        "scoreboard_reconcile_drift_total",
        "scoreboard_broadcast_lag_seconds_bucket",
        "scoreboard_claims_total",
    ):
        assert metric in exprs, metric


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts.test.yml")],
    ids=lambda a: " ".join(a),
)
def test_promtool_accepts_the_files(args):
    result = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- The environment file ----------------------------------------------------------------------------

VARIABLE = re.compile(r"^#?(SCOREBOARD_[A-Z0-9_]+)=(.*)$")


def read_settings():
    """``SCOREBOARD_*`` names the code reads (through config.env and its typed variants)."""
    names = set()
    pattern = re.compile(r"\benv(?:_bool|_int|_float)?\(\s*[\"']([A-Z0-9_]+)[\"']")
    for path in code_files():
        names |= set(pattern.findall(path.read_text()))
        names |= set(re.findall(r"[\"']SCOREBOARD_([A-Z0-9_]+)[\"']", path.read_text()))
    assert names
    return names


def example_variables():
    """``{name: (value, commented_out)}`` for every variable line of the example, checking its shape."""
    found = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.strip() or (line.startswith("#") and not VARIABLE.match(line)):
            continue
        match = VARIABLE.match(line)
        assert match, f"line {number + 1} is neither a comment nor SCOREBOARD_NAME=value: {line!r}"
        name = match.group(1).removeprefix("SCOREBOARD_")
        assert name not in found, f"{name} listed twice"
        previous = lines[number - 1] if number else ""
        assert previous.startswith("# ") and not VARIABLE.match(previous), f"{name} needs a comment line above it"
        found[name] = (match.group(2), line.startswith("#"))
    return found


def test_env_example_lists_every_production_setting_once_with_a_comment():
    listed = set(example_variables())
    read = read_settings()
    assert not listed - read, f"listed but read nowhere in the code: {sorted(listed - read)}"
    missing = read - listed - NOT_FOR_PRODUCTION
    assert not missing, f"read by the code but missing from {ENV_EXAMPLE.name}: {sorted(missing)}"


def test_env_example_sets_the_required_settings_and_sources_in_a_shell():
    variables = example_variables()
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY"):
        assert not variables[name][1], f"SCOREBOARD_{name} must be set, not commented out"
    assert "PROMETHEUS_MULTIPROC_DIR=" not in ENV_EXAMPLE.read_text().replace("# PROMETHEUS", "")
    result = subprocess.run(
        ["bash", "-c", f'set -eu -a; . "{ENV_EXAMPLE}"; set +a; env'],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},  # none of the tests' own SCOREBOARD_* settings
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    exported = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("SCOREBOARD_"))
    expected = {f"SCOREBOARD_{name}": value.strip('"') for name, (value, off) in variables.items() if not off}
    assert exported == expected
    # Commented-out values are shell-safe too (the ones with ';' are quoted).
    for name, (value, _) in variables.items():
        assert ";" not in value or value.startswith('"'), name


# --- systemd -----------------------------------------------------------------------------------------


def unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def units():
    found = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer"))
    names = {p.name for p in found}
    assert {"scoreboard-web.service", "scoreboard-worker.service", "scoreboard-beat.service"} <= names
    assert "scoreboard-worker-check.timer" in names
    return found


def test_every_unit_has_an_install_section():
    for path in units():
        install = unit(path)["Install"] if unit(path).has_section("Install") else None
        assert install is not None, f"{path.name} has no [Install] section"
        assert {"WantedBy", "RequiredBy", "Also"} & set(install), f"{path.name}: [Install] installs nothing"


def test_services_run_the_production_commands_with_the_environment_file():
    commands = {
        "scoreboard-web.service": "/opt/scoreboard/.venv/bin/gunicorn -c gunicorn.conf.py wsgi:app",
        "scoreboard-worker.service": "/opt/scoreboard/.venv/bin/celery -A celery_app worker",
        "scoreboard-beat.service": "/opt/scoreboard/.venv/bin/celery -A celery_app beat",
        "scoreboard-worker-check.service": "/opt/scoreboard/.venv/bin/celery -A celery_app inspect ping",
    }
    for name, command in commands.items():
        service = unit(SYSTEMD / name)["Service"]
        assert service["ExecStart"].startswith(command), name
        assert service["EnvironmentFile"] == "/etc/scoreboard/env", name
        assert service["WorkingDirectory"] == "/opt/scoreboard", name


def test_web_and_worker_metrics_agree_with_the_scrape_config():
    web, worker = (unit(SYSTEMD / f"scoreboard-{n}.service")["Service"] for n in ("web", "worker"))
    web_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", web["Environment"]).group(1)
    worker_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", worker["Environment"]).group(1)
    assert web_dir != worker_dir
    port = re.search(r"SCOREBOARD_WORKER_METRICS_PORT=(\d+)", worker["Environment"]).group(1)
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS / "prometheus.yml")["scrape_configs"]}
    targets = jobs["scoreboard-worker"]["static_configs"][0]["targets"]
    assert all(t.endswith(f":{port}") for t in targets), (port, targets)


def test_the_liveness_check_pings_the_node_the_worker_runs_as():
    worker = unit(SYSTEMD / "scoreboard-worker.service")["Service"]["ExecStart"]
    check = unit(SYSTEMD / "scoreboard-worker-check.service")["Service"]
    node = re.search(r"-n (\S+)", worker).group(1)
    assert f"--destination {node}" in check["ExecStart"]
    assert "scoreboard-worker.service" in check["ExecStopPost"]
    timer = unit(SYSTEMD / "scoreboard-worker-check.timer")["Timer"]
    assert timer.get("OnUnitActiveSec")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing_but_the_missing_install_dir():
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in units())], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/scoreboard/.venv/bin/" not in line
    ]
    assert not problems, "\n".join(problems)


# --- Procfile, make stack, the docs ------------------------------------------------------------------


def procfile():
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)  # honcho's own pattern
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def test_procfile_runs_the_production_processes_with_separate_metrics_dirs():
    processes = procfile()
    assert set(processes) == {"web", "worker", "beat"}
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in processes["web"]
    assert "celery -A celery_app worker" in processes["worker"]
    assert "celery -A celery_app beat" in processes["beat"]
    web_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", processes["web"]).group(1)
    worker_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", processes["worker"]).group(1)
    assert web_dir != worker_dir
    assert "SCOREBOARD_WORKER_METRICS_PORT" in processes["worker"]


def test_make_stack_migrates_loads_the_catalog_and_uses_a_valid_jwt_secret():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^stack:.*?\n((?:\t.*\n|.*\\\n)+)", makefile, re.M).group(1)
    for step in ("CREATE DATABASE", "flask db upgrade", "flask actions load scoreboard/default_catalog.json"):
        assert step in recipe, step
    assert "honcho start" in recipe
    secret = re.search(r"^STACK_JWT_SECRET \?= (\S+)$", makefile, re.M).group(1)
    config = (ROOT / "config.py").read_text()
    minimum = int(re.search(r"^MIN_HS256_SECRET_BYTES = (\d+)", config, re.M).group(1))
    dev_secret = re.search(r'^DEV_JWT_SECRET = "([^"]+)"', config, re.M).group(1)
    assert len(secret.encode()) >= minimum and secret != dev_secret
    assert re.search(r"^STACK_DB \?= scoreboard$", makefile, re.M)
    assert re.search(r"^honcho==\d+\.\d+\.\d+$", (ROOT / "requirements-dev.txt").read_text(), re.M)


def test_deploy_guide_names_every_shipped_file():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            assert str(path.relative_to(ROOT)) in guide or path.name in guide, path


def test_catalog_doc_shows_the_shipped_catalog():
    doc = (ROOT / "docs" / "catalog.md").read_text()
    assert "docs/catalog.md" in (ROOT / "README.md").read_text()
    example = re.search(r"```json\n(.*?)```", doc, re.S).group(1)
    assert json.loads(example) == json.loads((ROOT / "scoreboard" / "default_catalog.json").read_text())
    csv_text = re.search(r"```csv\n(.*?)```", doc, re.S).group(1)
    header = csv_text.splitlines()[0].split(",")
    assert header == ["key", "points", "enabled", "description", "maxPerUserPerDay", "cooldownSeconds"]
    assert "CATALOG_FILE" not in doc
