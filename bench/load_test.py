"""Five minutes of load with faults: annotators, a lead and an ML engineer against the whole
stack while PostgreSQL restarts, Redis goes away and the Celery worker is killed.

Starts a private stack in a temporary folder, so that nothing shared is touched (the
PostgreSQL on :5432 and the Redis on :6379 serve other people's tests):

* a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``, trust auth, ``fsync=off``:
  this only matters if the machine itself crashes, which no fault here does), on a free port;
* a private ``redis-server`` (append-only file, as docker-compose.yml runs it);
* gunicorn as bench/annotate_bench.py runs ours (``--workers 2 --worker-class gthread
  --threads 8`` by default), ``DEBUG=0``, static files collected;
* one Celery worker with the beat scheduler, as docker-compose.yml's ``worker`` service
  (``celery -A config worker -B -Q default,gpu``).

Seeds one project (``--comparisons`` pairs, overlap k=3, imported as annotate_bench does),
``--annotators`` annotators with API tokens, a lead (token + session), an ML engineer, and
an "archive" project of ``--archive-judgments`` judged pairs by COPY (bench/export_bench.py's
``fill``) so that an export runs long enough to be killed in the middle. Then, for
``--seconds``:

* each annotator loops next -> read 1.5-2.5 s -> submit, over its own HTTP/1.1 keep-alive
  connection (annotate_bench's ``Http``); a submit that fails (5xx, connection) is sent again
  after 1-2 s, as an annotator clicking again would (a submit is idempotent);
* the lead loads the dashboard page, its five htmx sections and the round statistics API
  every ``--lead-interval`` seconds;
* the ML engineer starts an export through ``POST /api/v1/exports/``, polls it every second
  to the end, downloads its files (checking their SHA-256), then starts the next one;
* /healthz is polled every 2 s (reported, not counted: its 503s are its job);
* faults: ``pg_ctl restart -m fast`` (window: from the command to the first successful
  query), Redis stopped for ``--redis-outage`` seconds, the worker's whole process group
  SIGKILLed while an export reads judgments. A supervisor (docker-compose's restart policy)
  starts a new worker ``--worker-restart-delay`` s after any exit, the bench's kill or a
  worker that died by itself. The settings are the application's own (``EXPORT_STALE_SECONDS``
  and the sweepers' period decide when the killed export is taken over; the report prints
  them); ``--export-stale-seconds`` overrides the first.

Afterwards (exports get ``--drain-seconds`` to finish) it counts in the database: acknowledged
judgments that are missing, duplicated judgments (same comparison + annotator), over-k
comparisons (counter and rows), counters and tallies that disagree with the rows; every 5xx
and connection failure with its time, endpoint and the fault window it fell in; each export's
outcome, attempts and duration. Prints tables and a one-line verdict; ``--json-out`` keeps
everything, ``--report`` prints the tables of a saved run again.

    flock /tmp/bench.lock .venv/bin/python bench/load_test.py --json-out /tmp/load.json
    flock /tmp/bench.lock .venv/bin/python bench/load_test.py --annotators 20 --seconds 60   # development

Run as root, the PostgreSQL commands run as the ``postgres`` user (initdb refuses root).
Results and the command used are in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from annotate_bench import ROOT, Http, machine_busy, ours_env, pct, process_tree, stop, wait_http, wait_idle

HOST = "127.0.0.1"
LIVE = "loadtest"
DB_NAME = "prefdata_load"
SECTIONS = ("summary", "round", "ratings", "agreement", "quality")
# The ML engineer's exports, in turn: (project, kind, file format). The archive's is the
# long one (the worker is killed while an export runs); the live project's reads
# judgments while they are being written.
EXPORTS = (("archive", "dpo", "parquet"), ("live", "raw", "parquet"))
WORKER_QUEUES = "default,gpu"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree_state() -> str:
    """The commit measured, and whether the working tree had uncommitted work."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    files = [line[3:] for line in dirty.splitlines() if line.strip()]
    return head + (f" + uncommitted work in {len(files)} files" if files else "")


# --- The private stack ------------------------------------------------------------------------


class PrivatePostgres:
    """A throwaway cluster in ``<tmp>/pg``, on its own port and socket directory."""

    def __init__(self, tmp: Path, port: int, fsync: bool):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise SystemExit("no /usr/lib/postgresql/*/bin/pg_ctl: the bench needs PostgreSQL's server binaries")
        self.bin = bins[-1].parent
        self.dir = tmp / "pg"
        self.log = self.dir / "postgres.log"
        self.port = port
        self.fsync = fsync
        self.started = False
        # initdb refuses to run as root; the cluster then belongs to the postgres user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{DB_NAME}"

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        # Output to files, never to a pipe: the postmaster pg_ctl starts inherits it.
        with open(os.devnull, "w") as null:
            return subprocess.run([*self.as_user, *cmd], stdout=null, stderr=null, cwd="/", timeout=timeout, check=True)

    def init(self) -> None:
        self.dir.mkdir()
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.dir), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def start(self) -> None:
        opts = f"-c listen_addresses={HOST} -p {self.port} -k {self.dir}"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        self.started = True
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start"
        )

    def restart(self) -> None:
        """What an operator's restart does: fast shutdown (running transactions are rolled
        back, connections cut), then start again with the same options."""
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-l",
            str(self.log),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "restart",
        )

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w", "-t", "30", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"warning: could not stop the private PostgreSQL: {exc}", flush=True)

    def query_ok(self, db: str = DB_NAME) -> bool:
        import psycopg

        try:
            with psycopg.connect(host=HOST, port=self.port, user="postgres", dbname=db, connect_timeout=2) as conn:
                conn.execute("SELECT 1").fetchone()
            return True
        except psycopg.Error:
            return False

    def create_db(self) -> None:
        import psycopg

        with psycopg.connect(host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")

    def pids(self) -> list[int]:
        try:
            return process_tree(int((self.dir / "postmaster.pid").read_text().split("\n", 1)[0]))
        except (OSError, ValueError):
            return []


class PrivateRedis:
    def __init__(self, tmp: Path, port: int):
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        cmd = ["/usr/bin/redis-server", "--port", str(self.port), "--bind", HOST, "--dir", str(self.dir)]
        # Append-only, as docker-compose.yml runs it: queued tasks survive a restart.
        cmd += ["--appendonly", "yes", "--save", "", "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"redis-server did not start on port {self.port} (see {self.dir / 'redis.log'})")
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.proc, timeout=20)
        self.proc = None

    def ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class Stack:
    """Every process and folder this run makes, and how to take them down (also on Ctrl-C)."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="loadtest-"))
        os.chmod(self.tmp, 0o711)  # the postgres user must reach <tmp>/pg
        self.pg = PrivatePostgres(self.tmp, free_port(), args.pg_fsync)
        self.redis = PrivateRedis(self.tmp, free_port())
        self.port = args.port or free_port()
        self.py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
        self.gunicorn: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.killed: set[int] = set()  # workers the bench SIGKILLed (the others died by themselves)
        self.logs: list = []
        self.env: dict[str, str] = {}
        self.cleaned = False

    def environment(self) -> dict[str, str]:
        env = ours_env(self.args, self.pg.url)  # DEBUG=0, SECRET_KEY, ALLOWED_HOSTS, no SSL redirect
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "VAR_DIR": str(self.tmp / "var"),
                "MEDIA_ROOT": str(self.tmp / "media"),
                "STATIC_ROOT": str(self.tmp / "static"),
                # The tree this file is in, before the virtualenv's editable install of the checkout.
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        if self.args.export_stale_seconds is not None:
            env["EXPORT_STALE_SECONDS"] = str(self.args.export_stale_seconds)
        return env

    def start_gunicorn(self) -> None:
        a = self.args
        cmd = [str(Path(self.py).parent / "gunicorn"), "config.wsgi:application", "--bind", f"{HOST}:{self.port}"]
        cmd += ["--workers", str(a.workers), "--worker-class", a.worker_class, "--timeout", "120"]
        cmd += ["--log-level", "warning", "--worker-tmp-dir", "/dev/shm"]
        if a.worker_class == "gthread":
            cmd += ["--threads", str(a.threads)]
        log = open(self.tmp / "gunicorn.log", "w")
        self.logs.append(log)
        self.gunicorn = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_http(HOST, self.port, "/healthz", self.gunicorn, 60)

    def start_worker(self) -> tuple[subprocess.Popen, Path]:
        n = len(self.workers) + 1
        path = self.tmp / f"worker-{n}.log"
        log = open(path, "w")
        self.logs.append(log)
        cmd = [str(Path(self.py).parent / "celery"), "-A", "config", "worker", "-B", "-Q", WORKER_QUEUES]
        cmd += ["-l", "info", "--concurrency", str(self.args.worker_concurrency), "-n", f"load{n}@%h"]
        # One schedule file for every worker, as a restarted container keeps its own.
        cmd += ["-s", str(self.tmp / "celerybeat-schedule")]
        env = dict(self.env, LOG_LEVEL="INFO")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(proc)
        return proc, path

    def kill_worker(self, proc: subprocess.Popen) -> None:
        """kill -9 of the worker's whole process group: the main process, its pool and beat."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def manage(self, *cmd: str) -> None:
        subprocess.run([self.py, "manage.py", *cmd], cwd=ROOT, env=self.env, check=True)

    def child(self, task: str, spec: dict) -> dict:
        out = subprocess.run(
            [self.py, __file__, "--_django", task, json.dumps(spec)],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.PIPE,
        ).stdout
        return json.loads(out.decode().strip().splitlines()[-1])

    def stop_app(self) -> None:
        for proc in self.workers:
            stop(proc, timeout=20)
        stop(self.gunicorn, timeout=20)

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        for proc in self.workers:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        stop(self.gunicorn, timeout=10)
        self.redis.stop()
        self.pg.stop()
        for log in self.logs:
            log.close()
        if self.args.keep:
            print("kept", self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --- Clients ----------------------------------------------------------------------------------


class Client(Http):
    """annotate_bench's keep-alive connection, with a session cookie and extra headers."""

    def __init__(self, port: int, token: str, cookie: str = ""):
        super().__init__(HOST, port, token)
        if cookie:
            self.prefix += f"Cookie: {cookie}\r\n"

    async def send(self, method: str, path: str, payload=None, headers: str = "", timeout: float = 60.0):
        # One coroutine per connection: swapping the prefix for one request is safe.
        saved = self.prefix
        self.prefix = saved + headers
        try:
            return await self.request(method, path, payload, timeout=timeout)
        finally:
            self.prefix = saved


class Recorder:
    """Every request (start, end, endpoint, status or exception), every acknowledged judgment,
    the fault windows; times in seconds from the start of the load."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.requests: list[tuple[float, float, str, int | str]] = []
        self.failures: list[dict] = []
        self.acks: list[tuple[int, int, int, int, float]] = []  # annotator, assignment, judgment, status, t
        self.gave_up: list[dict] = []
        self.refused_submits: dict[str, int] = {}
        self.exhausted: list[float] = []
        self.windows: list[dict] = []
        self.exports: list[dict] = []
        self.export_create_failures: list[dict] = []
        self.health: list[tuple[float, int | str, dict]] = []
        self.worker_exits: list[dict] = []
        self.client_errors: list[str] = []
        self.ml_current: dict = {}  # the export the ML engineer follows now (read by the worker fault)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def call(self, conn: Client, endpoint: str, method: str, path: str, payload=None, headers: str = ""):
        t0 = self.now()
        try:
            status, body = await conn.send(method, path, payload, headers)
        except Exception as exc:
            t1 = self.now()
            self.requests.append((t0, t1, endpoint, type(exc).__name__))
            self.failures.append({"start": t0, "end": t1, "endpoint": endpoint, "status": type(exc).__name__})
            return None, b""
        t1 = self.now()
        self.requests.append((t0, t1, endpoint, status))
        if status >= 500 and endpoint != "healthz":
            self.failures.append(
                {
                    "start": t0,
                    "end": t1,
                    "endpoint": endpoint,
                    "status": status,
                    "body": body[:160].decode(errors="replace"),
                }
            )
        return status, body


def verdict_payload(rng: random.Random) -> dict:
    choice = rng.choice(("left", "left", "right", "right", "tie"))
    strength = rng.choice(("slightly", "better", "significantly")) if choice in ("left", "right") else ""
    return {"choice": choice, "strength": strength, "safety": "both_safe", "time_spent_ms": rng.randint(1500, 2500)}


async def annotator(rec: Recorder, conn: Client, who: int, deadline: float, hard: float, think) -> None:
    rng = random.Random(who)
    await asyncio.sleep(rng.uniform(0, think[1]))
    while rec.now() < deadline:
        status, body = await rec.call(conn, "next", "POST", f"/api/v1/projects/{LIVE}/assignments/next/", {})
        if status != 200:
            await asyncio.sleep(rng.uniform(1, 2))
            continue
        data = json.loads(body)
        pair = data["pair"]
        if pair is None:
            if data.get("retry_after_seconds") is None:
                rec.exhausted.append(rec.now())
                return
            await asyncio.sleep(min(5, data["retry_after_seconds"]))
            continue
        assignment = pair["assignment"]
        await asyncio.sleep(rng.uniform(*think))
        payload = verdict_payload(rng)
        # Until the server acknowledges it or refuses it for good (4xx); a 5xx or a lost
        # connection is sent again, as an annotator clicking again would.
        while True:
            status, body = await rec.call(
                conn, "submit", "POST", f"/api/v1/assignments/{assignment}/judgment/", payload
            )
            if status in (200, 201):
                rec.acks.append((who, assignment, json.loads(body)["id"], status, rec.now()))
                break
            if status is not None and status < 500:
                rec.refused_submits[str(status)] = rec.refused_submits.get(str(status), 0) + 1
                break
            if rec.now() > hard:
                rec.gave_up.append({"annotator": who, "assignment": assignment, "last": status})
                break
            await asyncio.sleep(rng.uniform(1, 2))


async def lead(rec: Recorder, conn: Client, deadline: float, interval: float) -> None:
    hx = "HX-Request: true\r\n"
    while rec.now() < deadline:
        started = rec.now()
        await rec.call(conn, "dashboard", "GET", f"/projects/{LIVE}/dashboard/")
        for section in SECTIONS:
            await rec.call(
                conn, f"section:{section}", "GET", f"/projects/{LIVE}/dashboard/sections/{section}/", headers=hx
            )
        await rec.call(conn, "stats:round", "GET", f"/api/v1/projects/{LIVE}/stats/round/")
        await asyncio.sleep(max(0.0, started + interval - rec.now()))


async def ml_engineer(rec: Recorder, conn: Client, projects: dict[str, str], deadline: float, drain: float) -> None:
    turn = 0
    while rec.now() < deadline:
        which, kind, file_format = EXPORTS[turn % len(EXPORTS)]
        body_in = {"project": projects[which], "kind": kind, "file_format": file_format}
        status, body = await rec.call(conn, "export:create", "POST", "/api/v1/exports/", body_in)
        if status != 201:
            rec.export_create_failures.append(
                {"t": rec.now(), "status": status, "body": body[:160].decode(errors="replace")}
            )
            await asyncio.sleep(5)
            continue
        turn += 1
        job = json.loads(body)
        entry = {
            "id": job["id"],
            "project": which,
            "kind": kind,
            "format": file_format,
            "created": rec.now(),
            "seen_running": None,
            "finished": None,
            "status": job["status"],
            "attempt": job["attempt"],
            "percent_max": 0,
            "files": [],
        }
        rec.exports.append(entry)
        rec.ml_current = {"id": job["id"], "status": job["status"], "judgments_done": 0}
        while job["status"] in ("pending", "running") and rec.now() < drain:
            await asyncio.sleep(1)
            status, body = await rec.call(conn, "export:get", "GET", f"/api/v1/exports/{entry['id']}/")
            if status != 200:
                continue
            job = json.loads(body)
            if job["status"] == "running" and entry["seen_running"] is None:
                entry["seen_running"] = rec.now()
            entry.update(status=job["status"], attempt=job["attempt"])
            entry["percent_max"] = max(entry["percent_max"], job["percent"])
            moved = job["judgments_done"] != rec.ml_current.get("judgments_done")
            rec.ml_current = {
                "id": job["id"],
                "status": job["status"],
                "judgments_done": job["judgments_done"],
                "moved_at": rec.now() if moved else rec.ml_current.get("moved_at", -1e9),
            }
        rec.ml_current = {}
        if job["status"] in ("pending", "running"):
            break  # out of time: verify() reports where it stands
        entry["finished"] = rec.now()
        entry.update(rows=job["rows_total"], judgments=job["judgments_total"], error=job["error"])
        for f in job["files"]:
            path = urllib.parse.urlsplit(f["url"]).path
            for _ in range(10):  # a download that failed (5xx, no answer) is tried again
                status, data = await rec.call(conn, "export:file", "GET", path)
                if status is not None and status < 500:
                    break
                await asyncio.sleep(2)
            entry["files"].append(
                {
                    "name": f["name"],
                    "size": f["size"],
                    "status": status,
                    "sha256_ok": status == 200 and hashlib.sha256(data).hexdigest() == f["sha256"],
                }
            )


async def health_poller(rec: Recorder, conn: Client, stop_event: asyncio.Event) -> None:
    while not stop_event.is_set():
        t = rec.now()
        status, body = await rec.call(conn, "healthz", "GET", "/healthz")
        checks = {}
        if body:
            with contextlib.suppress(ValueError, AttributeError):
                checks = {k: v.get("status") for k, v in json.loads(body).get("checks", {}).items()}
        rec.health.append((t, status if status is not None else "no answer", checks))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=max(0.0, t + 2 - rec.now()))


# --- Faults -----------------------------------------------------------------------------------


async def inject_faults(rec: Recorder, stack: Stack, plan: list[tuple[float, str]], deadline: float) -> None:
    a = stack.args
    for at, kind in plan:
        await asyncio.sleep(max(0.0, at - rec.now()))
        if rec.now() >= deadline:
            rec.windows.append({"kind": kind, "skipped": "the load had ended"})
            continue
        if kind == "postgres":
            start = rec.now()
            await asyncio.to_thread(stack.pg.restart)
            restarted = rec.now()
            while not await asyncio.to_thread(stack.pg.query_ok):
                await asyncio.sleep(0.02)
            rec.windows.append({"kind": kind, "start": start, "end": rec.now(), "pg_ctl_returned": restarted})
            print(f"  [{start:6.1f}s] PostgreSQL restarted: {rec.now() - start:.2f} s to the first query", flush=True)
        elif kind == "redis":
            start = rec.now()
            await asyncio.to_thread(stack.redis.stop)
            stopped = rec.now()
            await asyncio.sleep(max(0.0, start + a.redis_outage - rec.now()))
            await asyncio.to_thread(stack.redis.start)
            rec.windows.append({"kind": kind, "start": start, "end": rec.now(), "stopped": stopped})
            print(f"  [{start:6.1f}s] Redis stopped; back after {rec.now() - start:.1f} s", flush=True)
        elif kind == "worker":
            # In the middle of an export: wait (a while) for one that is reading judgments.
            waited = rec.now()

            def reading() -> bool:  # progress seen in the last 3 s, not a job stuck with old progress
                c = rec.ml_current
                return c.get("status") == "running" and c.get("judgments_done", 0) > 0 and rec.now() - c["moved_at"] < 3

            while rec.now() < waited + a.kill_wait and not reading():
                await asyncio.sleep(0.2)
            while stack.workers[-1].poll() is not None:  # it died by itself: the supervisor is on it
                await asyncio.sleep(0.2)
            victim = dict(rec.ml_current) if reading() else None
            start = rec.now()
            proc = stack.workers[-1]
            stack.killed.add(proc.pid)
            await asyncio.to_thread(stack.kill_worker, proc)
            # The supervisor starts the next worker, as it would after any exit.
            while not any(e["pid"] == proc.pid and e.get("ready") is not None for e in rec.worker_exits):
                await asyncio.sleep(0.1)
            rec.windows.append(
                {
                    "kind": kind,
                    "start": start,
                    "end": rec.now(),
                    "waited_for_export": round(start - waited, 1),
                    "export": victim,
                }
            )
            print(
                f"  [{start:6.1f}s] worker SIGKILLed (export {victim['id'] if victim else 'none running'}); "
                f"new worker ready after {rec.now() - start:.1f} s",
                flush=True,
            )


async def supervise_worker(rec: Recorder, stack: Stack, stop_event: asyncio.Event) -> None:
    """What docker-compose's ``restart: unless-stopped`` does for the worker: start a new one
    whenever it exits, ``--worker-restart-delay`` seconds later; every exit is recorded
    (SIGKILLed by the bench, or died by itself, with the log's last CRITICAL line)."""
    while not stop_event.is_set():
        proc = stack.workers[-1]
        if proc.poll() is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=0.2)
            continue
        log = stack.tmp / f"worker-{len(stack.workers)}.log"
        reason = [line for line in log.read_text(errors="replace").splitlines() if "CRITICAL" in line][-1:]
        entry = {
            "pid": proc.pid,
            "exited": rec.now(),
            "returncode": proc.returncode,
            "killed_by_bench": proc.pid in stack.killed,
            "reason": reason[0][:300] if reason else "",
            "ready": None,
        }
        rec.worker_exits.append(entry)
        if not entry["killed_by_bench"]:
            print(f"  [{entry['exited']:6.1f}s] the worker exited by itself ({proc.returncode}): {entry['reason']}")
        await asyncio.sleep(stack.args.worker_restart_delay)
        new, new_log = stack.start_worker()
        await asyncio.to_thread(wait_worker_ready, new, new_log, 120)
        entry["ready"] = rec.now()


def wait_worker_ready(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the Celery worker exited with {proc.returncode} (see {log})")
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"the Celery worker was not ready after {timeout:.0f} s (see {log})")


def fault_plan(args) -> list[tuple[float, str]]:
    """Default times spread over the run: 20 %, 40 % (for 10 %, at most 30 s) and 67 %."""
    wanted = {f.strip() for f in args.faults.split(",") if f.strip()}
    plan = []
    if "postgres" in wanted:
        plan.append((args.pg_restart_at if args.pg_restart_at is not None else 0.2 * args.seconds, "postgres"))
    if "redis" in wanted:
        plan.append((args.redis_stop_at if args.redis_stop_at is not None else 0.4 * args.seconds, "redis"))
    if "worker" in wanted:
        plan.append((args.worker_kill_at if args.worker_kill_at is not None else 0.67 * args.seconds, "worker"))
    return sorted(plan)


# --- CPU --------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of each group of processes over the load (not the exports' drain after
    it), sampled every second (a process that dies counts up to its last sample)."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups
        self.base: dict[int, float] = {}
        self.last: dict[str, dict[int, float]] = {g: {} for g in groups}
        self.result: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _ticks(pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def sample(self) -> None:
        for group, pids in self.groups.items():
            for pid in pids():
                t = self._ticks(pid)
                if t is not None:
                    self.last[group][pid] = t

    def start(self, seconds: float) -> None:
        self.sample()
        self.base = {pid: t for per in self.last.values() for pid, t in per.items()}
        self.busy0 = machine_busy()
        self.client0 = time.process_time()
        self.wall0 = time.monotonic()
        self.end = self.wall0 + seconds
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_event.wait(max(0.0, min(1.0, self.end - time.monotonic()))):
            self.sample()
            if time.monotonic() >= self.end:
                self._compute()
                return

    def _compute(self) -> None:
        wall = time.monotonic() - self.wall0
        out = {g: sum(t - self.base.get(pid, 0.0) for pid, t in per.items()) / wall for g, per in self.last.items()}
        out["client"] = (time.process_time() - self.client0) / wall
        busy1 = machine_busy()
        busy = (busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1])
        out["other"] = max(0.0, (os.cpu_count() or 1) * busy - sum(out.values()))
        out["machine_busy_pct"] = 100 * busy
        self.result = {k: round(v, 2) for k, v in out.items()}

    def finish(self) -> dict[str, float]:
        """The numbers at the end of the load (or now, if it ended early)."""
        self.stop_event.set()
        self.thread.join()
        if not self.result:
            self.sample()
            self._compute()
        return self.result


# --- The run ----------------------------------------------------------------------------------


async def drive(stack: Stack, seed: dict, rec: Recorder) -> None:
    a = stack.args
    deadline = a.seconds
    hard = deadline + a.grace
    drain = deadline + a.drain_seconds
    think = (a.think_min, a.think_max)
    conns = [Client(stack.port, t) for t in seed["tokens"][: a.annotators]]
    lead_conn = Client(stack.port, seed["lead_token"], seed["lead_cookie"])
    ml_conn = Client(stack.port, seed["ml_token"])
    health_conn = Client(stack.port, seed["lead_token"])
    stop_health = asyncio.Event()
    supervisor = asyncio.create_task(supervise_worker(rec, stack, stop_health))
    tasks = [asyncio.create_task(annotator(rec, c, i, deadline, hard, think)) for i, c in enumerate(conns)]
    tasks.append(asyncio.create_task(lead(rec, lead_conn, deadline, a.lead_interval)))
    tasks.append(asyncio.create_task(ml_engineer(rec, ml_conn, seed["projects"], deadline, drain)))
    faults = asyncio.create_task(inject_faults(rec, stack, fault_plan(a), deadline))
    health = asyncio.create_task(health_poller(rec, health_conn, stop_health))
    try:
        outcomes = await asyncio.gather(*tasks, faults, return_exceptions=True)
        # A client that broke (an answer it could not read) is reported, not the end of the run.
        rec.client_errors = [repr(o)[:300] for o in outcomes if isinstance(o, BaseException)]
    finally:
        stop_health.set()
        await health
        await supervisor
        for t in tasks:
            t.cancel()
        for c in [*conns, lead_conn, ml_conn, health_conn]:
            c.close()


def run(args) -> dict:
    stack = Stack(args)
    atexit.register(stack.cleanup)
    results: dict = {
        "machine": f"{os.cpu_count()} cores (the client shares them)",
        "code": tree_state(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "annotators",
                "seconds",
                "comparisons",
                "overlap",
                "archive_judgments",
                "workers",
                "worker_class",
                "threads",
                "worker_concurrency",
                "lead_interval",
                "think_min",
                "think_max",
                "redis_outage",
                "worker_restart_delay",
                "export_stale_seconds",
                "pg_fsync",
            )
        },
    }
    try:
        t0 = time.perf_counter()
        stack.pg.init()
        stack.pg.start()
        stack.pg.create_db()
        stack.redis.start()
        stack.env = stack.environment()
        stack.manage("migrate", "-v0")
        stack.manage("collectstatic", "--noinput", "-v0")
        seed = stack.child(
            "seed",
            {
                "comparisons": args.comparisons,
                "overlap": args.overlap,
                "annotators": args.annotators,
                "archive_judgments": args.archive_judgments,
            },
        )
        print(
            f"private stack: PostgreSQL :{stack.pg.port} (fsync {'on' if args.pg_fsync else 'off'}), "
            f"Redis :{stack.redis.port}, gunicorn :{stack.port}; seeded {args.comparisons} pairs (k={args.overlap}), "
            f"{args.annotators} annotators, archive of {seed['archive_judgments']} judgments "
            f"in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        results["app_settings"] = seed["app_settings"]
        stack.start_gunicorn()
        proc, log = stack.start_worker()
        wait_worker_ready(proc, log, 120)
        plan = fault_plan(args)
        results["busy_before_pct"] = round(wait_idle(args.idle_pct, args.idle_wait), 1)
        print(
            f"load: {args.annotators} annotators, a lead, an ML engineer for {args.seconds:.0f}s; faults: "
            + (", ".join(f"{k} at {t:.0f}s" for t, k in plan) or "none"),
            flush=True,
        )
        meter = CpuMeter(
            {
                "gunicorn": lambda: process_tree(stack.gunicorn.pid) if stack.gunicorn else [],
                "celery": lambda: [p for w in stack.workers if w.poll() is None for p in process_tree(w.pid)],
                "postgres": stack.pg.pids,
                "redis": lambda: [stack.redis.proc.pid] if stack.redis.proc else [],
            }
        )
        rec = Recorder()
        meter.start(args.seconds)
        try:
            asyncio.run(drive(stack, seed, rec))
        finally:
            results["cpu_cores"] = meter.finish()
            results["wall"] = round(rec.now(), 1)
        stack.stop_app()
        acks_file = stack.tmp / "acks.json"
        acks_file.write_text(json.dumps(rec.acks))
        verify = stack.child(
            "verify", {"live": LIVE, "acks_file": str(acks_file), "annotators": args.annotators, "wall0": rec.wall0}
        )
        results.update(analyse(args, rec, verify))
        results["server_log"] = log_summary(stack.tmp / "gunicorn.log")
        results["worker_log"] = {p.name: log_summary(p) for p in sorted(stack.tmp.glob("worker-*.log"))}
    finally:
        stack.cleanup()
    return results


def log_summary(path: Path, top: int = 10) -> dict[str, int]:
    """The most frequent error and warning lines of a log (numbers blanked to group them)."""
    import re

    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    for line in path.read_text(errors="replace").splitlines():
        if any(k in line for k in ("ERROR", "Error:", "WARNING", "Exception", "Traceback", "CRITICAL")):
            key = re.sub(r"\d+", "N", line.strip())[:220]
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:top])


# --- Analysis ---------------------------------------------------------------------------------


def overlaps(req: dict, window: dict) -> bool:
    return "start" in window and req["start"] <= window["end"] and req["end"] >= window["start"]


def analyse(args, rec: Recorder, verify: dict) -> dict:
    windows = [w for w in rec.windows if "start" in w]
    endpoints: dict[str, dict] = {}
    for start, end, endpoint, status in rec.requests:
        e = endpoints.setdefault(endpoint.split(":")[0], {"lat": [], "status": {}})
        e["lat"].append((end - start) * 1000)
        e["status"][str(status)] = e["status"].get(str(status), 0) + 1
    per_endpoint = {
        name: {
            "count": len(e["lat"]),
            "p50": round(pct(e["lat"], 50), 1),
            "p95": round(pct(e["lat"], 95), 1),
            "p99": round(pct(e["lat"], 99), 1),
            "max": round(max(e["lat"]), 1),
            "status": dict(sorted(e["status"].items())),
        }
        for name, e in endpoints.items()
    }
    failures = []
    for f in rec.failures:
        f = dict(f, start=round(f["start"], 3), end=round(f["end"], 3))
        f["windows"] = [w["kind"] for w in windows if overlaps(f, w)]
        f["kind"] = "refused (503)" if f["status"] == 503 else "failed"
        failures.append(f)
    pg = [w for w in windows if w["kind"] == "postgres"]
    in_pg = [f for f in failures if "postgres" in f["windows"]]
    outside_pg = [f for f in failures if "postgres" not in f["windows"]]
    span = answer_span(in_pg)
    groups: dict[tuple, dict] = {}
    for f in failures:
        key = (f["endpoint"].split(":")[0], str(f["status"]), ",".join(f["windows"]) or "outside every fault")
        g = groups.setdefault(key, {"count": 0, "first": f["start"], "last": f["end"]})
        g["count"] += 1
        g["first"] = min(g["first"], f["start"])
        g["last"] = max(g["last"], f["end"])
    acked = [a for a in rec.acks if a[4] <= args.seconds]
    buckets = [0] * (int(args.seconds // 10) + 1)
    for a in acked:
        buckets[int(a[4] // 10)] += 1
    exports = export_outcomes(rec, verify, windows)
    health = health_timeline(rec.health)
    return {
        "per_endpoint": per_endpoint,
        "judgments_acknowledged": len(rec.acks),
        "judgments_per_s": round(len(acked) / args.seconds, 1),
        "judgments_per_10s": buckets[: int(args.seconds // 10)],
        "submits_given_up": rec.gave_up,
        "submits_refused": rec.refused_submits,
        "pool_exhausted": len(rec.exhausted),
        "windows": rec.windows,
        "worker_exits": rec.worker_exits,
        "client_errors": rec.client_errors,
        "failures": failures,
        "failure_groups": [
            {"endpoint": k[0], "status": k[1], "window": k[2], **{kk: round(vv, 2) for kk, vv in v.items()}}
            for k, v in sorted(groups.items(), key=lambda kv: kv[1]["first"])
        ],
        "fivexx_in_pg_window": len(in_pg),
        "fivexx_outside_pg_window": len(outside_pg),
        "fivexx_answer_span_in_pg_window": round(span, 3),
        "pg_window": round(pg[0]["end"] - pg[0]["start"], 3) if pg else None,
        "verify": verify,
        "exports": exports,
        "export_create_failures": rec.export_create_failures,
        "health": health,
    }


def answer_span(failures: list[dict]) -> float:
    """How long users saw errors: from the first 5xx answer to the last. (Measured from
    request starts it would include the time a request queued before the fault began.)"""
    return (max(f["end"] for f in failures) - min(f["end"] for f in failures)) if failures else 0.0


def health_timeline(samples: list[tuple[float, int | str, dict]]) -> list[dict]:
    """Stretches of /healthz answers that were not a plain 200 with every check ok."""
    out: list[dict] = []
    for t, status, checks in samples:
        down = sorted(f"{k} {v}" for k, v in checks.items() if v not in ("ok", "off"))
        state = f"{status}: " + (", ".join(down) if down else "") if (status != 200 or down) else ""
        if out and out[-1]["state"] == state and state:
            out[-1]["to"] = round(t, 1)
        elif state:
            out.append({"from": round(t, 1), "to": round(t, 1), "state": state.strip()})
    return out


def export_outcomes(rec: Recorder, verify: dict, windows: list[dict]) -> list[dict]:
    killed = next((w.get("export") or {} for w in windows if w["kind"] == "worker"), {}).get("id")
    db = {j["id"]: j for j in verify.get("exports", [])}
    out = []
    for e in rec.exports:
        row = db.get(e["id"], {})
        out.append(
            {
                **e,
                "db_status": row.get("status"),
                "db_attempt": row.get("attempt"),
                "db_started": row.get("started"),
                "db_finished": row.get("finished"),
                "db_files_ok": row.get("files_ok"),
                "db_error": row.get("error", ""),
                "killed": e["id"] == killed,
                "seconds": round(e["finished"] - e["created"], 1) if e["finished"] is not None else None,
            }
        )
    # Jobs the client did not create (none expected) or did not follow to the end.
    for j in verify.get("exports", []):
        if j["id"] not in {e["id"] for e in rec.exports}:
            out.append({"id": j["id"], "project": j["project"], "db_status": j["status"], "note": "not the client's"})
    return out


# --- Django children (seed, verify) -----------------------------------------------------------


def django_task(task: str, spec: dict) -> None:
    import annotate_bench

    if task == "seed":
        # The live project and its annotators exactly as annotate_bench seeds them.
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            annotate_bench.django_task(
                "seed",
                {
                    "projects": [LIVE],
                    "comparisons": spec["comparisons"],
                    "overlap": spec["overlap"],
                    "annotators": spec["annotators"],
                    "analyze": True,
                },
            )
        tokens = json.loads(buf.getvalue().strip().splitlines()[-1])["tokens"]
        from importlib import import_module

        import export_bench
        from django.conf import settings
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

        from accounts.roles import Role
        from accounts.services import api_token_create, user_create
        from annotation.models import Project

        lead_user = user_create(username="loadtest-lead", password=None, roles=[Role.LEAD])
        ml_user = user_create(username="loadtest-ml", password=None, roles=[Role.ML_ENGINEER])
        # A logged-in browser session for the lead's pages (what the login form leaves behind).
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session[SESSION_KEY] = str(lead_user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = lead_user.get_session_auth_hash()
        session.create()
        with contextlib.redirect_stdout(io.StringIO()):
            filled = export_bench.fill(spec["archive_judgments"], 50, 0.05)
        archive = Project.objects.get(pk=filled["project"]).slug
        print(
            json.dumps(
                {
                    "tokens": tokens,
                    "lead_token": api_token_create(user=lead_user, name="load")[1],
                    "lead_cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
                    "ml_token": api_token_create(user=ml_user, name="load")[1],
                    "projects": {"live": LIVE, "archive": archive},
                    "archive_judgments": filled["judgments"],
                    "app_settings": {
                        "EXPORT_STALE_SECONDS": settings.EXPORT_STALE_SECONDS,
                        "export_sweep_seconds": settings.CELERY_BEAT_SCHEDULE["requeue-abandoned-exports"]["schedule"],
                        "EXPORT_BATCH_SIZE": settings.EXPORT_BATCH_SIZE,
                    },
                }
            )
        )
        return

    # verify: annotate_bench's checks of the live project, then the acknowledged judgments.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        annotate_bench.django_task("verify", {"projects": [LIVE]})
    out: dict = {"live": json.loads(buf.getvalue().strip().splitlines()[-1])[LIVE]}
    from datetime import datetime

    from django.contrib.auth import get_user_model
    from django.db import connection

    from rlhf_export.models import ExportJob
    from rlhf_export.writers import export_storage

    acks = json.loads(Path(spec["acks_file"]).read_text())
    names = {u.username: u.pk for u in get_user_model().objects.filter(username__startswith="annbench")}
    ids = [names[f"annbench{who}"] for who, *_ in acks]
    assignments = [a[1] for a in acks]
    judgments = [a[2] for a in acks]
    with connection.cursor() as cur:

        def one(sql: str, params=()) -> int:
            cur.execute(sql, params)
            return cur.fetchone()[0]

        cur.execute(
            "SELECT r.id FROM annotation_round r JOIN annotation_project p ON p.id = r.project_id WHERE p.slug = %s",
            [LIVE],
        )
        rounds = [r[0] for r in cur.fetchall()]
        acked = "(SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS t(jid, aid, uid))"
        params = [judgments, assignments, ids]
        project_id = one("SELECT id FROM annotation_project WHERE slug = %s", [LIVE])
        out["acks"] = {
            "acknowledged": len(acks),
            "distinct_judgment_ids": len(set(judgments)),
            # No judgment row with the id the server answered.
            "missing": one(
                f"SELECT count(*) FROM {acked} a WHERE NOT EXISTS "
                "(SELECT 1 FROM annotation_judgment j WHERE j.id = a.jid)",
                params,
            ),
            # A row with that id, but not the assignment or annotator it was acknowledged for.
            "mismatched": one(
                f"SELECT count(*) FROM {acked} a JOIN annotation_judgment j ON j.id = a.jid "
                "WHERE j.assignment_id IS DISTINCT FROM a.aid OR j.annotator_id <> a.uid",
                params,
            ),
            # The same (comparison, annotator) acknowledged under two judgment ids.
            "duplicated_client_side": one(
                f"SELECT count(*) FROM (SELECT s.comparison_id, s.annotator_id FROM {acked} a "
                "JOIN annotation_assignment s ON s.id = a.aid GROUP BY 1, 2 HAVING count(DISTINCT a.jid) > 1) x",
                params,
            ),
            # Stored but never acknowledged (the answer was lost, or the client gave up).
            "stored_unacknowledged": one(
                "SELECT count(*) FROM annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
                "WHERE c.round_id = ANY(%s) AND NOT (j.id = ANY(%s))",
                [rounds, judgments],
            ),
        }
        out["integrity"] = {
            "judgments": one(
                "SELECT count(*) FROM annotation_judgment j JOIN annotation_comparison c ON c.id = j.comparison_id "
                "WHERE c.round_id = ANY(%s)",
                [rounds],
            ),
            "duplicated": out["live"]["judgment_pair_twice"],
            "over_k_counter": one(
                "SELECT count(*) FROM annotation_comparison WHERE round_id = ANY(%s) "
                "AND judgment_count > required_judgments",
                [rounds],
            ),
            "over_k_rows": out["live"]["over_judged"],
            "counters_off": out["live"]["counters_off"],
            "double_booked": out["live"]["double_booked"],
            # The dashboard's tallies (database triggers) against the rows they count.
            "tally_off": one(
                "SELECT count(*) FROM annotation_comparison c LEFT JOIN insights_comparisontally t "
                "ON t.comparison_id = c.id WHERE c.round_id = ANY(%s) AND COALESCE(t.total, 0) <> "
                "(SELECT count(*) FROM annotation_judgment j WHERE j.comparison_id = c.id)",
                [rounds],
            ),
            "activity_off": one(
                "SELECT count(*) FROM (SELECT j.annotator_id, count(*) AS n FROM annotation_judgment j "
                "JOIN annotation_comparison c ON c.id = j.comparison_id WHERE c.round_id = ANY(%s) GROUP BY 1) x "
                "FULL JOIN (SELECT annotator_id, judgments FROM insights_projectactivity WHERE project_id = %s) p "
                "ON p.annotator_id = x.annotator_id WHERE COALESCE(p.judgments, 0) <> COALESCE(x.n, 0)",
                [rounds, project_id],
            ),
            "open_leases": out["live"]["open_leases"],
        }
    storage = export_storage()
    wall0 = spec["wall0"]

    def rel(dt: datetime | None) -> float | None:
        return round(dt.timestamp() - wall0, 1) if dt else None

    exports = []
    for job in ExportJob.objects.select_related("project").order_by("pk"):
        files_ok = True
        for art in job.artifacts.all():
            digest = hashlib.sha256()
            try:
                with storage.open(art.storage_name, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                files_ok = False
                continue
            files_ok = files_ok and digest.hexdigest() == art.sha256
        exports.append(
            {
                "id": job.pk,
                "project": job.project.slug,
                "status": job.status,
                "attempt": job.attempt,
                "created": rel(job.created_at),
                "started": rel(job.started_at),
                "finished": rel(job.finished_at),
                "error": job.error[:200],
                "judgments": job.judgments_total,
                "files_ok": files_ok if job.status == "succeeded" else None,
            }
        )
    out["exports"] = exports
    print(json.dumps(out))


# --- Report -----------------------------------------------------------------------------------


def verdict(r: dict) -> tuple[bool, str]:
    acks, integ = r["verify"]["acks"], r["verify"]["integrity"]
    lost = acks["missing"] + acks["mismatched"]
    dup = integ["duplicated"] + acks["duplicated_client_side"]
    over = max(integ["over_k_counter"], integ["over_k_rows"])
    outside = r["fivexx_outside_pg_window"]
    span = answer_span([f for f in r["failures"] if "postgres" in f["windows"]])
    ok = lost == 0 and dup == 0 and over == 0 and outside == 0 and span < 1.0
    text = (
        f"VERDICT: {'goal met' if ok else 'goal NOT met'}: lost {lost}, duplicated {dup}, over-k {over} "
        f"(goal 0 each); 5xx/failed requests {len(r['failures'])}: {r['fivexx_in_pg_window']} during the PostgreSQL "
        f"restart (answered within {span:.2f} s, goal < 1 s), {outside} outside it (goal 0)"
    )
    return ok, text


def print_report(r: dict) -> None:
    s = r["settings"]
    print()
    print(f"machine: {r['machine']}; code {r['code']}; wall {r.get('wall')} s")
    if "app_settings" in r:
        print("application settings: " + ", ".join(f"{k} {v}" for k, v in r["app_settings"].items()))
    print()
    print("| endpoint | requests | p50 ms | p95 ms | p99 ms | max ms | answers |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, e in sorted(r["per_endpoint"].items()):
        statuses = ", ".join(f"{k}: {v}" for k, v in e["status"].items())
        print(f"| {name} | {e['count']} | {e['p50']} | {e['p95']} | {e['p99']} | {e['max']:.0f} | {statuses} |")
    print()
    print(
        f"{s['annotators']} annotators for {s['seconds']:.0f} s: {r['judgments_acknowledged']} judgments "
        f"acknowledged ({r['judgments_per_s']} /s inside the window); submits refused (4xx) "
        f"{r['submits_refused'] or 0}, given up {len(r['submits_given_up'])}, pool exhausted for "
        f"{r['pool_exhausted']} annotators"
    )
    per10 = r.get("judgments_per_10s", [])
    if per10:
        print("judgments acknowledged per 10 s: " + " ".join(str(n) for n in per10))
    print()
    print("| fault | at s | window s | notes |")
    print("|---|---:|---:|---|")
    for w in r["windows"]:
        if "start" not in w:
            print(f"| {w['kind']} | – | – | skipped: {w['skipped']} |")
            continue
        note = ""
        if w["kind"] == "postgres":
            note = f"pg_ctl returned after {w['pg_ctl_returned'] - w['start']:.2f} s; window ends at the first query"
        elif w["kind"] == "redis":
            note = "stopped, started again; window ends when it answers PING"
        elif w["kind"] == "worker":
            e = w.get("export")
            note = (
                f"during export {e['id']} ({e['judgments_done']} judgments read)" if e else "no export was running"
            ) + "; window ends when the new worker is ready"
        print(f"| {w['kind']} | {w['start']:.1f} | {w['end'] - w['start']:.2f} | {note} |")
    print()
    if r["failure_groups"]:
        print("| 5xx / failed | answer | fault window | count | first sent s | last answered s |")
        print("|---|---|---|---:|---:|---:|")
        for g in r["failure_groups"]:
            print(
                f"| {g['endpoint']} | {g['status']} | {g['window']} | {g['count']} | {g['first']:.2f} | {g['last']:.2f} |"
            )
        refused = sum(1 for f in r["failures"] if f["kind"] == "refused (503)")
        print(
            f"clear refusals (503, nothing changed): {refused}; failures (500, other 5xx, no answer): "
            f"{len(r['failures']) - refused}"
        )
    else:
        print("no 5xx and no failed request")
    print()
    acks, integ = r["verify"]["acks"], r["verify"]["integrity"]
    print("| check | count |")
    print("|---|---:|")
    for label, value in (
        ("judgments acknowledged (201/200 with an id)", acks["acknowledged"]),
        ("acknowledged but missing", acks["missing"]),
        ("acknowledged but stored for another assignment/annotator", acks["mismatched"]),
        ("duplicated (same comparison + annotator twice, rows)", integ["duplicated"]),
        ("duplicated (acknowledged under two ids)", acks["duplicated_client_side"]),
        ("over-k comparisons (judgment_count > k)", integ["over_k_counter"]),
        ("over-k comparisons (rows > k)", integ["over_k_rows"]),
        ("counters that disagree with rows (judgment_count, taken)", integ["counters_off"]),
        (
            "tallies that disagree with rows (per comparison / per annotator)",
            f"{integ['tally_off']} / {integ['activity_off']}",
        ),
        ("double-booked comparisons", integ["double_booked"]),
        ("stored but never acknowledged", acks["stored_unacknowledged"]),
        ("judgments in the database", integ["judgments"]),
    ):
        print(f"| {label} | {value} |")
    print()
    print("| export | project | kind | created s | finished s | seconds | status | attempts | files (SHA-256) |")
    print("|---|---|---|---:|---:|---:|---|---:|---|")
    for e in r["exports"]:
        if "note" in e:
            print(f"| {e['id']} | {e['project']} | | | | | {e['db_status']} | | {e['note']} |")
            continue
        files = f"{sum(f['sha256_ok'] for f in e['files'])}/{len(e['files'])} ok" if e["files"] else "–"
        mark = " (worker killed)" if e["killed"] else ""
        fin = f"{e['finished']:.1f}" if e["finished"] is not None else "–"
        secs = e["seconds"] if e["seconds"] is not None else "–"
        print(
            f"| {e['id']}{mark} | {e['project']} | {e['kind']} {e['format']} | {e['created']:.1f} | {fin} | {secs} | "
            f"{e['db_status']} | {e['db_attempt']} | {files} |"
        )
    for err in r.get("client_errors", []):
        print(f"client error: {err}")
    for w in r.get("worker_exits", []):
        how = (
            "SIGKILLed by the bench" if w["killed_by_bench"] else f"exited by itself ({w['returncode']}): {w['reason']}"
        )
        ready = f"{w['ready']:.1f}" if w["ready"] is not None else "–"
        print(f"worker exit at {w['exited']:.1f} s, {how}; next worker ready at {ready} s")
    if r["export_create_failures"]:
        print(f"export starts refused: {len(r['export_create_failures'])} ({r['export_create_failures'][:3]})")
    print()
    if r["health"]:
        print(
            "/healthz (not counted above): "
            + "; ".join(f"{h['from']:.0f}-{h['to']:.0f} s {h['state']}" for h in r["health"])
        )
    c = r.get("cpu_cores", {})
    if c:
        print(
            "CPU during the load (cores): "
            + ", ".join(f"{k} {v}" for k, v in c.items() if k != "machine_busy_pct")
            + f"; machine {c['machine_busy_pct']:.0f}% busy"
        )
    for name, lines in [("gunicorn", r.get("server_log", {})), *r.get("worker_log", {}).items()]:
        for line, n in list(lines.items())[:5]:
            print(f"  {name} log: {n}x {line}")
    print()
    print(verdict(r)[1])


# --- Main -------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_django":
        django_task(sys.argv[2], json.loads(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=200)
    p.add_argument("--seconds", type=float, default=300, help="length of the load")
    p.add_argument("--think-min", type=float, default=1.5)
    p.add_argument("--think-max", type=float, default=2.5)
    p.add_argument("--comparisons", type=int, default=15000, help="pairs in the live project (enough for the run)")
    p.add_argument("--overlap", type=int, default=3, help="judgments per pair (k)")
    p.add_argument("--archive-judgments", type=int, default=200000, help="judged pairs of the project exported")
    p.add_argument("--lead-interval", type=float, default=5, help="seconds between the lead's dashboard refreshes")
    p.add_argument("--grace", type=float, default=60, help="seconds an annotator may keep re-sending after the end")
    p.add_argument("--drain-seconds", type=float, default=240, help="seconds after the end for exports to finish")
    p.add_argument("--faults", default="postgres,redis,worker", help="which faults to inject (comma-separated)")
    p.add_argument("--pg-restart-at", type=float, help="seconds (default 20 %% of the run)")
    p.add_argument("--redis-stop-at", type=float, help="seconds (default 40 %% of the run)")
    p.add_argument("--redis-outage", type=float, help="seconds Redis stays down (default 10 %% of the run, at most 30)")
    p.add_argument("--worker-kill-at", type=float, help="seconds (default 67 %% of the run)")
    p.add_argument("--kill-wait", type=float, default=60, help="wait this long for an export to be running")
    p.add_argument("--worker-restart-delay", type=float, default=2, help="seconds before the new worker starts")
    p.add_argument(
        "--export-stale-seconds",
        type=int,
        help="EXPORT_STALE_SECONDS for the run (default: the settings' own): a killed worker's export is taken "
        "over this long after its last heartbeat",
    )
    p.add_argument("--port", type=int, default=0, help="gunicorn's port (default: a free one)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--worker-class", choices=("sync", "gthread"), default="gthread")
    p.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    p.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker processes (docker-compose: 2)")
    p.add_argument("--idle-pct", type=float, default=10, help="wait before the load until the machine is this idle")
    p.add_argument("--idle-wait", type=float, default=300, help="... for at most this many seconds")
    p.add_argument("--pg-fsync", action="store_true", help="keep fsync on in the private PostgreSQL")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database files)")
    p.add_argument("--json-out", help="write the results here")
    p.add_argument("--report", metavar="JSON", help="print the tables of an earlier run")
    args = p.parse_args()
    if args.report:
        print_report(json.loads(Path(args.report).read_text()))
        return
    if args.redis_outage is None:
        args.redis_outage = min(30.0, 0.1 * args.seconds)
    # Ctrl-C raises KeyboardInterrupt; make SIGTERM unwind the same way, through the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; code {tree_state()}", flush=True)
    results = run(args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    print_report(results)
    sys.exit(0 if verdict(results)[0] else 1)


if __name__ == "__main__":
    main()
