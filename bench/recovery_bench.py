"""Recovery from a killed worker: seconds from SIGKILL to another worker taking the job
over, and to the job's end, for an export and a sampling job, with the settings in force
(defaults: EXPORT_STALE_SECONDS and SAMPLING_STALE_SECONDS 30, JOB_SWEEP_SECONDS 15).

    flock /tmp/bench.lock env DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefdata_recovery_bench \\
        .venv/bin/python bench/recovery_bench.py --runs 3

The database named in DATABASE_URL is dropped and created again (its name must contain
"bench"). The script starts its own redis-server on a free port (broker and cache; the
shared one is left alone) and a stub OpenAI-compatible server that answers each chat
completion after ``--answer-ms``. Per run: worker A (one pool process) starts the job;
once the job has made progress, worker B starts with the beat scheduler (the sweepers on
their schedule), and A is SIGKILLed:

- ``export-worker`` / ``sampling-worker``: the whole worker A (main process and pool),
  as when its container or machine dies. Its message stays unacknowledged in Redis until
  the visibility timeout (hours): the sweeper is what takes the job over.
- ``export-child``: A's pool process only (the OOM killer's usual victim); A's main
  process hands the message back (``reject_on_worker_lost``) and the re-delivery waits
  for the heartbeat to go stale - or the sweeper gets there first.

"takeover" is when another attempt claims the job (``ExportJob.attempt`` or
``SamplingJob.runs`` grows); "done" is when it has finished.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from export_bench import child, pg_recreate

SCENARIOS = ("export-worker", "export-child", "sampling-worker")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_start(folder: Path) -> tuple[subprocess.Popen, str]:
    """A Redis of this run's own (a password: nobody else's worker takes its messages)."""
    import redis

    port, password = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
        + ["--requirepass", password],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port, password=password).ping()
            return proc, f"redis://:{password}@127.0.0.1:{port}/0"
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


class StubModel(BaseHTTPRequestHandler):
    """Chat completions after a fixed delay; the answer names the request so that every
    prompt, version and seed gets a text of its own."""

    delay = 0.05

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        request = json.loads(body or b"{}")
        text = f"Stub answer {abs(hash(json.dumps(request, sort_keys=True))) % 10**12}."
        answer = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class StubServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a killed worker drops its connections mid-answer: expected here


def worker(
    name: str, env: dict[str, str], folder: Path, *, queues: str, beat: bool, concurrency: int
) -> subprocess.Popen:
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-n", f"{name}@%h"]
    args += ["-c", str(concurrency), "--pool", "prefork", "--without-gossip", "--without-mingle", "-l", "warning"]
    if beat:
        args += ["-B", "-s", str(folder / f"beat-{name}")]
    log = open(folder / f"{name}.log", "w")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(app, name: str, proc: subprocess.Popen, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for reply in app.control.ping(timeout=0.5):
            for hostname in reply:
                if hostname.startswith(f"{name}@"):
                    return hostname
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker {name} did not start (exit {proc.poll()})")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- One run ------------------------------------------------------------------------------


def export_job(project_id: int):
    from annotation.models import Project
    from rlhf_export.models import ExportJob
    from rlhf_export.services import export_job_create

    job = export_job_create(
        project=Project.objects.get(pk=project_id),
        kind="dpo",
        created_by=None,
        filters={"aggregation": "none", "deduplicate": False, "test_fraction": 0.05},
    )

    def state() -> tuple[str, int, int]:
        row = ExportJob.objects.filter(pk=job.pk).values_list("status", "attempt", "judgments_done").get()
        return row[0], row[1], row[2]

    return state, ("succeeded", "failed", "cancelled")


def sampling_job(run: int, prompts: int, base_url: str):
    from annotation.models import Prompt
    from annotation.services import project_create
    from core.text import messages_hash
    from models_service.models import SamplingJob
    from models_service.rounds import round_create, round_open
    from models_service.services import model_version_create

    project = project_create(name=f"Recovery bench {run} {time.time_ns()}")
    Prompt.objects.bulk_create(
        Prompt(project=project, messages=m, content_hash=messages_hash(m))
        for m in ([{"role": "user", "content": f"Question {i} of run {run}?"}] for i in range(prompts))
    )
    config = {"base_url": base_url, "model": "stub", "max_concurrency": 8, "timeout_s": 30, "max_retries": 1}
    tag = f"{run}-{time.time_ns()}"
    old = model_version_create(
        name=f"stub-a-{tag}", backend="openai", config=config, default_sampling={"max_tokens": 8}
    )
    new = model_version_create(
        name=f"stub-b-{tag}", backend="openai", parent=old, config=config, default_sampling={"max_tokens": 8}
    )
    round_ = round_open(round_=round_create(project=project, baseline=old, candidate=new))
    holder: dict[str, int] = {}

    def state() -> tuple[str, int, int]:
        if "job" not in holder:  # the job worker A took (the other waits for worker B)
            running = SamplingJob.objects.filter(round=round_, status="running", sampled__gt=0).first()
            if running is None:
                return "pending", 0, 0
            holder["job"] = running.pk
        row = SamplingJob.objects.filter(pk=holder["job"]).values_list("status", "runs", "sampled").get()
        return row[0], row[1], row[2]

    return state, ("done", "failed")


def one_run(scenario: str, run: int, args, env: dict[str, str], folder: Path, project_id: int, base_url: str) -> dict:
    import redis
    from celery import current_app

    a_name, b_name = f"A{run}-{scenario}", f"B{run}-{scenario}"
    a = worker(a_name, env, folder, queues="default,gpu", beat=False, concurrency=1)
    # B waits on a queue of its own (with the beat scheduler running) until A holds the job.
    b = worker(b_name, env, folder, queues=f"idle-{b_name}", beat=True, concurrency=3)
    try:
        wait_ready(current_app, a_name, a)
        b_host = wait_ready(current_app, b_name, b)
        if scenario.startswith("export"):
            state, finished = export_job(project_id)
        else:
            state, finished = sampling_job(run, args.prompts, base_url)
        deadline = time.monotonic() + 300
        status, attempt, progress = state()
        while not (status == "running" and progress > 0):
            if time.monotonic() > deadline or status in finished:
                raise SystemExit(f"{scenario}: the job never ran on worker A ({status}); make it bigger")
            time.sleep(0.05)
            status, attempt, progress = state()
        for queue in ("default", "gpu"):
            current_app.control.add_consumer(queue, destination=[b_host], reply=True, timeout=5)
        status, attempt, progress = state()
        if status != "running":
            raise SystemExit(f"{scenario}: the job ended before the kill ({status}); make it bigger")
        import psutil

        if scenario.endswith("child"):
            victims = [p.pid for p in psutil.Process(a.pid).children(recursive=True)]
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(a.pid, signal.SIGKILL)
        killed = time.monotonic()
        took_over = None
        while True:
            status, now_attempt, _ = state()
            if took_over is None and now_attempt > attempt:
                took_over = time.monotonic() - killed
            if status in finished and took_over is not None:
                break
            if time.monotonic() - killed > args.timeout:
                raise SystemExit(f"{scenario}: not taken over within {args.timeout} s ({status}, {now_attempt})")
            time.sleep(0.05)
        return {
            "scenario": scenario,
            "run": run,
            "takeover": took_over,
            "done": time.monotonic() - killed,
            "status": status,
        }
    finally:
        stop(b)
        stop(a)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # leftovers (duplicates, retries) of this run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--judgments", type=int, default=200_000, help="exported per export run")
    parser.add_argument("--prompts", type=int, default=3000, help="per sampling job")
    parser.add_argument("--answer-ms", type=int, default=20, help="the stub model server's delay per answer")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a run after this many seconds")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL=postgres://…/prefdata_recovery_bench (a database this script may drop)")

    with tempfile.TemporaryDirectory(prefix="recovery-bench-") as tmp:
        folder = Path(tmp)
        redis_proc, redis_url = redis_start(folder)
        StubModel.delay = args.answer_ms / 1000
        stub = StubServer(("127.0.0.1", 0), StubModel)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        base_url = f"http://127.0.0.1:{stub.server_address[1]}/v1"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
        env.update(
            DEBUG="1",
            REDIS_URL=redis_url,
            MEDIA_ROOT=str(folder / "media"),
            DJANGO_SETTINGS_MODULE="config.settings",
            CELERY_TASK_ALWAYS_EAGER="0",
            LOG_LEVEL="WARNING",
        )
        try:
            pg_recreate(url)
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            project_id = 0
            scenarios = [s for s in args.scenarios.split(",") if s]
            if any(s.startswith("export") for s in scenarios):
                filled = child(["--fill", "--judgments", str(args.judgments), "--annotators", "20"], env)
                project_id = filled["project"]
            os.environ.update(env)
            import django

            django.setup()
            from django.conf import settings

            results = [
                one_run(scenario, run, args, env, folder, project_id, base_url)
                for scenario in scenarios
                for run in range(1, args.runs + 1)
            ]
        finally:
            stub.shutdown()
            redis_proc.terminate()
            redis_proc.wait()

    print(
        f"EXPORT_STALE_SECONDS={settings.EXPORT_STALE_SECONDS} SAMPLING_STALE_SECONDS={settings.SAMPLING_STALE_SECONDS} "
        f"JOB_SWEEP_SECONDS={settings.JOB_SWEEP_SECONDS} · export of {args.judgments:,} judgments · "
        f"sampling {args.prompts:,} prompts at {args.answer_ms} ms"
    )
    print(f"{'scenario':<16} {'run':>3} {'kill → takeover s':>18} {'kill → done s':>14}")
    for r in results:
        print(f"{r['scenario']:<16} {r['run']:>3} {r['takeover']:>18.1f} {r['done']:>14.1f}")
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        times = [r["takeover"] for r in results if r["scenario"] == scenario]
        print(
            f"{scenario:<16} takeover: median {statistics.median(times):.1f} s, "
            f"min {min(times):.1f} s, max {max(times):.1f} s"
        )


if __name__ == "__main__":
    main()
