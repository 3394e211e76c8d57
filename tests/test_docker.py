"""The Docker deployment (docker/Dockerfile, docker/docker-compose.yml, .env.example,
.dockerignore), checked without a Docker engine: the files parse, every ohlcv service runs a real
`ohlcv` command, every variable is a setting the CLI knows, start order uses conditions, and the
image is built from this project's pyproject by pip, as a non-root user."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import SETTING_VARS
from ohlcv_cli.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
OHLCV = Path(sys.executable).with_name("ohlcv")

OHLCV_SERVICES = ("migrate", "topic", "backfill", "stream", "consume")
ONE_SHOT = ("migrate", "topic", "backfill")
LONG_RUNNING = ("stream", "consume")

# Variables only docker compose reads (interpolation in docker/docker-compose.yml, or compose's
# own); the ohlcv CLI never sees a meaning in them.
COMPOSE_ONLY = {"COMPOSE_PROFILES", "KAFKA_UI_PORT", "KAFKA_EXTERNAL_PORT", "KAFKA_ADVERTISED_HOST",
                "PUBLISH_ADDRESS", "OHLCV_IMAGE", "OHLCV_ENV_FILE"}
# What the third-party images read, per service.
IMAGE_VARS = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGPORT"},
    "kafka": {
        "KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "CLUSTER_ID",
        "KAFKA_LOG_DIRS", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
    },
    "kafka-ui": {"KAFKA_CLUSTERS_0_NAME", "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"},
}


def setting_env_names() -> set[str]:
    """The environment names of the settings: the field name upper-cased, or its alias."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(name.upper())
        else:
            choices = getattr(alias, "choices", [alias])
            names.add(next(str(c) for c in choices if str(c).isupper()))
    return names


SETTINGS = setting_env_names()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_example_lines() -> tuple[dict[str, str], set[str]]:
    """(the assignments that are set, the names that are only mentioned as `# NAME=...`)."""
    active, commented = {}, set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[m[1]] = m[2]
        elif m := re.fullmatch(r"#\s?([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(m[1])
    return active, commented


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}$]*))?\}")
_VAR_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` (the only forms the file uses), nested defaults
    (`${A:-${B:-x}}`) from the inside out."""
    while (done := _VAR.sub(lambda m: env.get(m[1]) or (m[2] or ""), value)) != value:
        value = done
    return value


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SETTING_VARS}


# --- the compose file ------------------------------------------------------------------------

def test_compose_file_is_compose_v2_with_the_whole_stack(compose):
    assert "version" not in compose
    assert set(compose["services"]) == {"postgres", "kafka", "kafka-ui", *OHLCV_SERVICES}
    assert {"pg-data", "kafka-data"} <= set(compose["volumes"])


def test_compose_config_validates_with_docker_compose():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine: `docker compose config` not run")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: `docker compose config -q` not run "
                    f"({(probe.stderr or probe.stdout).strip().splitlines()[0]})")
    r = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_ohlcv_services_share_one_image_built_from_the_dockerfile(compose):
    """One service builds the image, the others only name it: builds that differ in nothing but
    the service label would each take the tag in turn and recreate every container (issue 20)."""
    services = compose["services"]
    images = {services[name]["image"] for name in OHLCV_SERVICES}
    assert len(images) == 1
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    assert {services[name]["pull_policy"] for name in OHLCV_SERVICES} == {"never"}
    build = services["migrate"]["build"]
    assert build["context"] == ".."
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_every_ohlcv_service_runs_a_real_ohlcv_command(compose):
    commands = {name: compose["services"][name]["command"] for name in OHLCV_SERVICES}
    assert commands == {
        "migrate": ["ohlcv", "db", "upgrade"],
        "topic": ["ohlcv", "topic", "create"],
        "backfill": ["ohlcv", "backfill"],
        "stream": ["ohlcv", "stream"],
        "consume": ["ohlcv", "consume"],
    }
    procs = {name: subprocess.Popen([str(OHLCV), *cmd[1:], "--help"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=clean_env())
             for name, cmd in commands.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{name}: {commands[name]}: {err}"
        assert "Usage: ohlcv" in out


def test_start_order_uses_conditions_not_sleeps(compose):
    services = compose["services"]
    expected = {
        "migrate": {"postgres": "service_healthy"},
        "topic": {"kafka": "service_healthy"},
        "backfill": {"migrate": "service_completed_successfully"},
        "stream": {"migrate": "service_completed_successfully", "topic": "service_completed_successfully"},
        "consume": {"migrate": "service_completed_successfully", "topic": "service_completed_successfully"},
        "kafka-ui": {"kafka": "service_healthy"},
    }
    for name, service in services.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions"
        assert {dep: spec["condition"] for dep, spec in deps.items()} == expected.get(name, {}), name
        for dep, spec in deps.items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, which has no check"
        # the bundled infrastructure may be left out (profiles) for an external one
        for dep in deps:
            if services[dep].get("profiles"):
                assert deps[dep].get("required") is False, f"{name} -> {dep}"
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\bsleep\b", text)


def test_one_shots_run_once_and_the_pipeline_runs_for_ever(compose):
    services = compose["services"]
    for name in ONE_SHOT:
        assert services[name].get("restart", "no") == "no", name
        assert "healthcheck" not in services[name]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped"
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "METRICS_PORT" in test and "/metrics" in test
        assert "ports" not in services[name] and "container_name" not in services[name]  # --scale
    assert "container_name" not in yaml.dump(compose)


def test_infrastructure_services(compose):
    services = compose["services"]
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("ZOOKEEPER" in k for k in env)
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocol_map) == {"INTERNAL", "EXTERNAL", "CONTROLLER"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka{listeners['CONTROLLER']}"
    for key, value in env.items():
        if key.endswith(("REPLICATION_FACTOR", "MIN_ISR")):
            assert value == "1", key
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka" + listeners["INTERNAL"]
    # the external address follows the publish address unless set (issue 20)
    assert interpolate(advertised["EXTERNAL"], {}) == "localhost:9092"
    assert interpolate(advertised["EXTERNAL"], {"KAFKA_ADVERTISED_HOST": "kafka.example.com"}) == "kafka.example.com:9092"
    assert "${PUBLISH_ADDRESS" in advertised["EXTERNAL"]
    # the healthcheck sends a Kafka request from bash: no JVM per probe
    test = kafka["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"] and "/dev/tcp/127.0.0.1/" + listeners["INTERNAL"].lstrip(":") in test[3]
    assert "kafka-" not in test[3] and "java" not in test[3]
    # the ohlcv containers reach the broker on the internal listener by default
    ohlcv_env = environment(services["stream"])
    assert interpolate(ohlcv_env["KAFKA_BROKER"], {}) == advertised["INTERNAL"]

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    assert any(v.startswith("pg-data:") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])

    ui = services["kafka-ui"]
    assert ui["image"].startswith("kafbat/kafka-ui:")
    assert any("${KAFKA_UI_PORT:-8090}" in p for p in ui["ports"])


# --- variables -------------------------------------------------------------------------------

def test_ohlcv_services_read_only_settings_the_cli_knows(compose):
    for name in OHLCV_SERVICES:
        unknown = set(environment(compose["services"][name])) - SETTINGS
        assert not unknown, f"{name}: {unknown} are no ohlcv settings"


def test_image_services_read_only_their_listed_variables(compose):
    for name, allowed in IMAGE_VARS.items():
        assert set(environment(compose["services"][name])) <= allowed, name


def test_interpolated_variables_are_settings_or_compose_only():
    used = set(_VAR_NAME.findall(COMPOSE_FILE.read_text()))
    assert {"KAFKA_ADVERTISED_HOST", "PUBLISH_ADDRESS", "OHLCV_ENV_FILE"} <= used
    unknown = used - SETTINGS - COMPOSE_ONLY
    assert not unknown


def test_env_example_names_every_setting_and_nothing_else():
    active, commented = env_example_lines()
    mentioned = set(active) | commented
    assert mentioned - SETTINGS - COMPOSE_ONLY == set()
    assert SETTINGS - mentioned == set(), "settings missing from .env.example"
    assert not any(value == "" for value in active.values()), "an empty value is not 'unset'"


def test_env_example_is_valid_for_the_host_cli():
    s = Settings(_env_file=str(ENV_EXAMPLE))
    # the host CLI reaches the bundled PostgreSQL published on localhost
    assert s.db_url().startswith("postgresql+psycopg://postgres:")
    assert s.db_url().endswith("@localhost:5432/ohlcv")
    assert s.kafka_broker is None  # the CLI's default, 127.0.0.1:9092, is the published listener


def test_containers_get_a_valid_configuration_pointing_at_the_bundled_services(compose, monkeypatch):
    """What a container sees: .env (env_file) overridden by `environment:`, interpolated from .env."""
    active, _ = env_example_lines()
    for name in OHLCV_SERVICES:
        seen = dict(active)
        seen.update({k: interpolate(v, active) for k, v in environment(compose["services"][name]).items()})
        for key in SETTINGS:
            monkeypatch.delenv(key, raising=False)
        for key, value in seen.items():
            monkeypatch.setenv(key, value)
        s = Settings(_env_file=None)
        assert s.db_url() == "postgresql+psycopg://postgres:change-me@postgres:5432/ohlcv", name
        assert s.kafka_broker == "kafka:19092", name
        assert s.log_format == "json", name
    postgres = {k: interpolate(v, active) for k, v in environment(compose["services"]["postgres"]).items()}
    assert postgres == {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "change-me",
                        "POSTGRES_DB": "ohlcv", "PGPORT": "5432"}


def test_env_file_is_the_repository_env(compose):
    for name in OHLCV_SERVICES:
        (entry,) = compose["services"][name]["env_file"]
        assert (COMPOSE_FILE.parent / interpolate(entry["path"], {})).resolve() == ROOT / ".env"


def test_first_make_up_creates_env_and_stops_before_starting_anything(tmp_path):
    """Without a .env, `make up` copies .env.example and stops (exit 1) saying what to review,
    so that PostgreSQL never initialises its volume with the example's password."""
    env = tmp_path / "new.env"
    r = subprocess.run(["make", "--no-print-directory", "up", f"ENV_FILE={env}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env=clean_env())
    assert r.returncode != 0
    assert env.read_text() == ENV_EXAMPLE.read_text()
    assert "POSTGRES_PASSWORD" in r.stdout and "nothing started" in r.stdout
    assert "docker compose" not in r.stdout + r.stderr


# --- the image -------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_builds_a_wheel_from_the_pyproject_and_pip_installs_it():
    ins = dockerfile_instructions()
    froms = [arg for word, arg in ins if word == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"]
    build_stage = ins[: [w for w, _ in ins].index("FROM", 1)]
    runtime_stage = ins[len(build_stage):]
    copies = [arg for word, arg in build_stage if word == "COPY"]
    # the whole build context, which .dockerignore narrows to pyproject.toml and the packages
    assert copies == [". ./"]
    runs = " ".join(arg for word, arg in build_stage if word == "RUN")
    assert re.search(r"pip wheel .*--wheel-dir /wheels \.$", runs)
    runtime_runs = " ".join(arg for word, arg in runtime_stage if word == "RUN")
    assert re.search(r"pip install --no-index --find-links=/wheels ohlcv\b", runtime_runs)
    assert " -e " not in runtime_runs and "--editable" not in runtime_runs
    # the runtime copies no sources: only the wheels, bind-mounted from the build stage
    assert not [arg for word, arg in runtime_stage if word in ("COPY", "ADD")]


def test_dockerfile_runs_as_a_non_root_user():
    users = [arg for word, arg in dockerfile_instructions() if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i:end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        if any(regex(pattern).fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_the_build_context_yields_a_wheel_with_the_migrations(tmp_path):
    """Build the wheel from exactly the files .dockerignore lets into the context, as the image's
    build stage does: it must contain the CLI and the Alembic scripts (ohlcv_cli.migrations)."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = tmp_path / "context"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    sent = [p for p in tracked if (ROOT / p).is_file() and not _dockerignore_excludes(p, patterns)]
    assert not any(p.startswith((".env", ".venv/", ".git/", "tests/", ".cache/")) for p in sent)
    for private in (".env", ".venv/bin/python", ".git/config", ".cache/kafka/x.jar", "build/lib/x.py",
                    "ohlcv.db", "ohlcv_cli/__pycache__/x.cpython-311.pyc"):
        assert _dockerignore_excludes(private, patterns), private
    for rel in sent:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    for word, arg in dockerfile_instructions():
        if word == "COPY" and "--from" not in arg:
            for src in arg.split()[:-1]:
                assert (context / src).exists(), f"COPY {src}: not in the build context"
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(context)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = zipfile.ZipFile(next(dist.glob("ohlcv-*.whl"))).namelist()
    assert "ohlcv_cli/migrations/env.py" in names
    assert "ohlcv_cli/migrations/script.py.mako" in names
    assert any(n.startswith("ohlcv_cli/migrations/versions/0001_") for n in names)
    assert "ohlcv_cli/cli/__init__.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)
