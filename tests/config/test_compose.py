"""The docker-compose stack (docker-compose.yml, Dockerfile, docker/) checked without an engine.

PyYAML is always installed: drf-spectacular, a runtime dependency, requires it.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
README = ROOT / "README.md"

SERVICES = {"postgres", "redis", "web", "worker", "gpu-worker", "vllm"}
APP_SERVICES = ("web", "worker", "gpu-worker")
DOCKER_COMPOSE = shutil.which("docker-compose")
REAL_LOOKING_SECRET = "compose-test-" + "k" * 50
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose is not installed (apt-get install docker-compose)"
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def healthcheck_words(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


# --- the compose file -----------------------------------------------------------------


def test_the_compose_file_defines_exactly_the_six_services(services):
    assert set(services) == SERVICES


def test_the_app_services_share_settings_through_an_x_app_anchor(compose):
    assert "x-app" in compose
    text = COMPOSE_FILE.read_text()
    assert re.search(r"^x-app:\s*&\w", text, re.MULTILINE), "x-app must define a YAML anchor"
    for name in APP_SERVICES:
        merges = re.search(rf"^  {re.escape(name)}:\n    <<: \*", text, re.MULTILINE)
        assert merges, f"{name} must merge x-app"


def test_web_publishes_its_port_only_on_localhost(services):
    ports = services["web"].get("ports")
    assert ports, "web must publish its port"
    for port in ports:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), port
        assert port.endswith(":8000")
    assert "${WEB_PORT:-8000}" in ports[0]


def test_no_service_but_web_publishes_a_port(services):
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"web"}


def test_postgres_and_redis_are_the_pinned_images_with_healthchecks_and_volumes(services, compose):
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in healthcheck_words(services["postgres"])
    assert services["redis"]["image"] == "redis:7"
    assert "ping" in healthcheck_words(services["redis"])
    for name in ("postgres", "redis"):
        volume = services[name]["volumes"][0].split(":", 1)[0]
        assert volume in compose["volumes"], f"{name} keeps its data in a named volume"


def test_app_services_wait_for_healthy_postgres_and_redis(services):
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_app_services_use_the_stack_database_and_broker_and_require_a_secret_key(services):
    for name in APP_SERVICES:
        env = environment(services[name])
        assert env["DATABASE_URL"] == "postgres://prefdata:prefdata@postgres:5432/prefdata", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert str(env["DEBUG"]) == "0", name
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"]), name
        assert env.get("ALLOWED_HOSTS"), name


def test_only_web_runs_the_migrations(services):
    assert str(environment(services["web"]).get("RUN_MIGRATIONS")) == "1"
    for name in ("worker", "gpu-worker"):
        assert str(environment(services[name]).get("RUN_MIGRATIONS", "0")) != "1", name


def test_web_serves_config_wsgi_with_gunicorn_on_all_interfaces_inside_the_container(services):
    args = argv(services["web"]["command"])
    assert args[:2] == ["gunicorn", "config.wsgi"]
    assert option(args, "--bind", "-b") == "0.0.0.0:8000"


def test_web_has_a_media_volume_and_a_healthcheck_on_healthz(services, compose):
    web = services["web"]
    assert any(v.split(":")[0] in compose["volumes"] and ":/data/media" in v for v in web["volumes"])
    assert "healthcheck.py" in healthcheck_words(web)
    assert '"/healthz?require=database"' in HEALTHCHECK.read_text()  # Redis or a worker down: web stays up


def test_worker_consumes_queue_default_and_gpu_worker_queue_gpu(services):
    worker = argv(services["worker"]["command"])
    gpu_worker = argv(services["gpu-worker"]["command"])
    for args in (worker, gpu_worker):
        assert args[:3] == ["celery", "-A", "config"] and "worker" in args
    assert option(worker, "-Q", "--queues") == "default"
    assert option(worker, "--concurrency", "-c") == "2"
    assert option(gpu_worker, "-Q", "--queues") == "gpu"
    assert option(gpu_worker, "--concurrency", "-c") == "1"


@pytest.mark.parametrize("name", ["gpu-worker", "vllm"])
def test_gpu_services_reserve_one_nvidia_gpu(services, name):
    devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_services_without_a_gpu_reserve_none(services):
    for name in SERVICES - {"gpu-worker", "vllm"}:
        assert "deploy" not in services[name], name


def test_gpu_worker_is_built_with_the_gpu_extra_and_keeps_model_weights_in_volumes(services, compose):
    gpu_worker = services["gpu-worker"]
    assert gpu_worker["build"]["target"] == "gpu"
    assert gpu_worker["image"] != services["web"]["image"]
    assert "FROM app AS gpu" in DOCKERFILE.read_text()
    assert '".[gpu]"' in DOCKERFILE.read_text()
    env = environment(gpu_worker)
    assert env["HF_HOME"] == "/data/hf"
    assert any(key.startswith("VLLM_") for key in env)
    assert any(v.split(":")[0] == "hf-cache" and v.split(":")[1] == "/data/hf" for v in gpu_worker["volumes"])
    assert "hf-cache" in compose["volumes"]


def test_vllm_serves_the_openai_api_on_port_8000_with_a_health_check(services, compose):
    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai")
    args = argv(vllm["command"])
    assert option(args, "--model") == "${VLLM_MODEL:-/models/candidate}"
    assert option(args, "--host") == "0.0.0.0"
    assert option(args, "--port") == "8000"
    assert "/health" in healthcheck_words(vllm)
    assert any(":/models" in v for v in vllm["volumes"])
    assert "models" in compose["volumes"]


# --- README ---------------------------------------------------------------------------


def readme_services() -> list[str]:
    """Service names in backticks from the first column of README's services table.

    The table under "## Services" is used; without that heading, any table whose
    header's first column says "service". Nothing found is a failure, not a skip:
    the README must document the stack."""
    assert README.exists(), "README.md is missing"
    text = README.read_text()
    match = re.search(r"^##\s+Services\s*$(.*?)(?=^##\s|\Z)", text, re.MULTILINE | re.DOTALL | re.IGNORECASE)
    tables = [match.group(1)] if match else re.findall(r"(?:^\|.*\|[ \t]*\n?)+", text, re.MULTILINE)
    names: list[str] = []
    for table in tables:
        rows = [line.strip() for line in table.splitlines() if line.strip().startswith("|")]
        if not rows:
            continue
        if not match and "service" not in rows[0].strip("|").split("|")[0].lower():
            continue
        for row in rows[1:]:
            first = row.strip("|").split("|")[0]
            names += re.findall(r"`([^`]+)`", first)
    assert names, 'README.md needs a "## Services" section with a table listing each service in backticks'
    return names


def test_every_service_in_the_readme_services_table_is_defined_in_the_compose_file(services):
    missing = [name for name in readme_services() if name not in services]
    assert not missing, f"README names services that docker-compose.yml lacks: {missing}"


def test_every_compose_service_is_listed_in_the_readme_services_table(services):
    listed = set(readme_services())
    assert not set(services) - listed, f"README's services table lacks {sorted(set(services) - listed)}"


# --- docker-compose itself --------------------------------------------------------------


def run_compose(tmp_path: Path, secret_key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY" and not k.startswith("COMPOSE_")}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    empty_env_file = tmp_path / "empty.env"  # a developer's .env must not decide the outcome
    empty_env_file.write_text("")
    return subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_docker_compose
def test_docker_compose_config_accepts_the_file(tmp_path):
    result = run_compose(tmp_path, REAL_LOOKING_SECRET)
    assert result.returncode == 0, result.stderr


@needs_docker_compose
def test_docker_compose_refuses_to_run_without_a_secret_key(tmp_path):
    result = run_compose(tmp_path, None)
    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


# --- Dockerfile, entrypoint, healthcheck --------------------------------------------------


def test_the_dockerfile_builds_on_python_311_slim_in_stages_and_runs_as_a_non_root_user():
    text = DOCKERFILE.read_text()
    assert "python:3.11-slim" in text
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert {"builder", "app", "gpu"} <= set(stages)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert "constraints.tx[t]" in text and "-c constraints.txt" in text
    assert "collectstatic --noinput" in text
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in text


def test_the_build_context_keeps_what_pip_install_needs_and_leaves_out_secrets():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git"} <= ignored
    assert not {"README.md", "pyproject.toml", "constraints.txt", "docker", "docker/"} & ignored


def fake_python(tmp_path: Path) -> tuple[dict, Path]:
    """A `python` that records its arguments, first on PATH."""
    log = tmp_path / "python-calls"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}, log


def test_the_entrypoint_migrates_before_the_command_when_run_migrations_is_set(tmp_path):
    env, log = fake_python(tmp_path)
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "echo", "command ran"],
        env={**env, "RUN_MIGRATIONS": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("command ran")
    assert log.read_text().split("\n")[0] == "manage.py migrate --noinput"


@pytest.mark.parametrize("value", [None, "0"])
def test_the_entrypoint_only_runs_the_command_without_run_migrations(tmp_path, value):
    env, log = fake_python(tmp_path)
    env.pop("RUN_MIGRATIONS", None)
    if value is not None:
        env["RUN_MIGRATIONS"] = value
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "echo", "command ran"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "command ran"
    assert not log.exists()


def load_healthcheck():
    spec = importlib.util.spec_from_file_location("compose_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("allowed_hosts", "host"),
    [
        (None, "localhost"),
        ("", "localhost"),
        ("example.org,localhost", "example.org"),
        (".example.org", "example.org"),
        ("*", "localhost"),
    ],
)
def test_the_healthcheck_sends_a_host_that_allowed_hosts_accepts(monkeypatch, allowed_hosts, host):
    if allowed_hosts is None:
        monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_HOSTS", allowed_hosts)
    assert load_healthcheck().host_header() == host


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (301, 1), (503, 1)])
def test_the_healthcheck_passes_only_on_http_200_from_healthz(monkeypatch, status, exit_code):
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.update(path=self.path, host=self.headers["Host"], proto=self.headers["X-Forwarded-Proto"])
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HEALTHCHECK_PORT", str(server.server_address[1]))
        monkeypatch.setenv("ALLOWED_HOSTS", "prefdata.example.org")
        assert load_healthcheck().main() == exit_code
    finally:
        server.shutdown()
        server.server_close()
    assert seen == {"path": "/healthz?require=database", "host": "prefdata.example.org", "proto": "https"}


def test_the_healthcheck_fails_when_nothing_listens(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HEALTHCHECK_PORT", str(port))
    assert load_healthcheck().main() == 1
