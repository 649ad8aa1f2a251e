"""A private ``redis-server`` for the tests that stop Redis (the shared one on
127.0.0.1:6379 serves other test runs and must stay up), and the fixtures that point
this process's cache and Celery broker at it.

The server keeps an append-only file in the test's temporary folder and is stopped
with SIGTERM, so what it held comes back when it starts again on the same port - a
restart, as docker-compose's ``redis`` service does it (``--appendonly yes``).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    folder: Path
    port: int = field(default_factory=free_port)
    # A password of its own: a worker of another test run still trying the port of its
    # own Redis, stopped earlier, must not connect to this one and take its messages.
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--requirepass",
                self.password,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                # Ours, not another test run's server that took the port first.
                if self.client().info("server")["process_id"] == self.process.pid:
                    return self
            except Exception:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis writes its append-only file and exits
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_private_redis(private_redis, settings) -> Iterator[RedisServer]:
    """This process's cache and Celery broker on the private server, tasks queued there
    (not run in-process), as in a deployment with ``REDIS_URL``; the breaker of the
    cache short (0.5 s) so that a restart shows at once."""
    from celery import _state

    from config.celery import app
    from core.health import workers_forget

    # The project's app is the current one (a test that made a Celery app of its own may
    # have left that one current), as in a web or worker process.
    previous = _state.get_current_app()
    app.set_current()
    conf = app.conf
    # Read before the Django settings change: Celery's configuration reads through to them.
    saved = {"broker_url": conf.broker_url, "task_always_eager": conf.task_always_eager}
    url = private_redis.url
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.FailSoftRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "private",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "DOWN_SECONDS": 0.5},
        }
    }
    settings.CELERY_BROKER_URL = url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.HEALTHZ_REQUIRE = ["database", "cache", "broker"]
    conf.broker_url = url
    conf.task_always_eager = False
    _drop_broker_pools(app)
    workers_forget()
    try:
        yield private_redis
    finally:
        _drop_broker_pools(app)
        conf.update(saved)
        workers_forget()
        previous.set_current()


def _drop_broker_pools(app) -> None:
    """Celery keeps its broker connections (producer pool) for the process: forget them
    so that the next publish connects to the broker configured now (kombu keeps one pool
    per broker URL, and every private server has a port of its own)."""
    app._pool = None
    app.amqp._producer_pool = None
