"""Settings come from the environment and fail loudly on bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-" + "k3y" * 20,
    "ALLOWED_HOSTS": "prefdata.example.org",
    "DATABASE_URL": "postgres://u:p@db.example.org:5432/prefdata",
    "REDIS_URL": "redis://redis.example.org:6379/0",
}


def django(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PROD and not k.startswith(("SECURE_", "CSRF_", "SESSION_", "CELERY_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = django("check", "--deploy", "--fail-level", "WARNING", **PROD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "env,message",
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "short"}, "at least 50"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must list"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "supported are postgres"),
        ({"REDIS_URL": "http://redis"}, "must start with redis://"),
        ({"DB_CONN_MAX_AGE": "soon"}, "DB_CONN_MAX_AGE='soon' is not an integer"),
        ({"HEALTHZ_REQUIRE": "database,disk"}, "HEALTHZ_REQUIRE names disk"),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_clear_message(env, message):
    result = django("check", **{**PROD, **env})
    assert result.returncode != 0
    assert message in result.stderr


def test_a_secret_can_be_read_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("f1le-" + "s3cret" * 10 + "\n")
    env = {k: v for k, v in PROD.items() if k != "SECRET_KEY"}
    result = django(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        SECRET_KEY_FILE=str(secret),
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "f1le-" + "s3cret" * 10


def test_the_embedded_default_uses_sqlite_and_runs_tasks_in_process(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER, s.CELERY_BROKER_URL)"
    )
    result = django("shell", "--no-imports", "-c", code, DEBUG="1", VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True", "memory://"]


def test_redis_url_switches_to_a_real_celery_broker():
    code = "from django.conf import settings as s; print(s.CELERY_TASK_ALWAYS_EAGER, s.CELERY_BROKER_URL)"
    result = django("shell", "--no-imports", "-c", code, **PROD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "redis://redis.example.org:6379/0"]


def test_with_redis_the_cache_fails_soft_and_healthz_requires_the_cache_and_the_broker(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.CACHES['default']['BACKEND'], ','.join(s.HEALTHZ_REQUIRE), s.JOB_SWEEP_SECONDS, "
        "s.EXPORT_STALE_SECONDS, s.SAMPLING_STALE_SECONDS)"
    )
    result = django("shell", "--no-imports", "-c", code, **PROD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["core.cache.FailSoftRedisCache", "database,cache,broker", "15", "30", "30"]
    # Embedded: a local-memory cache, tasks in-process, only the database is required.
    embedded = django("shell", "--no-imports", "-c", code, DEBUG="1", VAR_DIR=str(tmp_path))
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout.split()[:2] == ["django.core.cache.backends.locmem.LocMemCache", "database"]
