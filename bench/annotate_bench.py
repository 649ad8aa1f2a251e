"""Annotation load test: simulated annotators against the running server, as in production.

Starts the server itself (gunicorn + PostgreSQL, DEBUG=0, bound to 127.0.0.1), seeds one
project per load level (overlap k=3, no safety label, edits off) with ``--comparisons``
pairs, creates annotators with API tokens, and drives them over HTTP/1.1 keep-alive
connections (one per annotator, an asyncio client in this process: the server runs in
other processes). Two modes:

* capacity: no think time; N annotators loop next -> submit for ``--capacity-seconds``;
  prints pairs/s (completed submits) and p50/p95/p99 of next and of submit;
* realistic: each annotator reads its pair for 1.5-2.5 s (uniform) before submitting;
  prints p50/p95/p99 of next and of submit.

Afterwards it checks the database: no comparison with more judgments than it needs, no
(comparison, annotator) pair twice, and "double-booked" comparisons: handed to more
annotators than required at one time (must be 0).

The same loads against Label Studio 1.23 (``--target labelstudio``), installed in its own
virtualenv outside the checkout; the script starts it (``label-studio start``, its own
server) on SQLite or PostgreSQL, creates the admin, a pairwise project per level
(maximum_annotations=k, overlap for 100 % of tasks), imports the same pairs, creates the
annotators through its API (each with its own token), drives ``GET /api/projects/<id>/next/``
and ``POST /api/tasks/<id>/annotations/``, and counts tasks handed to more annotators at
once than the overlap allows (client side: every task id /next returned, and to whom) plus
over-annotated tasks in its database.

    # PostgreSQL at 127.0.0.1:5432, user postgres, trust auth; the script (re)creates its databases.
    .venv/bin/python bench/annotate_bench.py --workers 2 --worker-class gthread --threads 8 \\
        --json-out /tmp/ours-pg.json
    python3.11 -m venv /tmp/ls-venv && /tmp/ls-venv/bin/pip install 'label-studio==1.23.*'
    .venv/bin/python bench/annotate_bench.py --target labelstudio --ls-venv /tmp/ls-venv \\
        --ls-db sqlite --ls-url http://127.0.0.1:8080 --json-out /tmp/ls-sqlite.json   # then --ls-db postgres
    .venv/bin/python bench/annotate_bench.py --report /tmp/ours-pg.json /tmp/ls-sqlite.json /tmp/ls-pg.json

Results and the commands used are in docs/BENCHMARKS.md.

``--profile`` (ours): one sync worker under cProfile plus a timer on every SQL statement
(Django execute_wrapper), dumped when the worker exits; prints the top functions and
statements. Every load run stops by itself (time limits); servers are stopped at the end.

Only the standard library at module level: Label Studio's interpreter runs this file
too (``--_ls-django``) to mint its users' tokens and to check its database.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
WORDS = [
    "model",
    "answer",
    "prompt",
    "reward",
    "policy",
    "gradient",
    "token",
    "sample",
    "human",
    "preference",
    "data",
    "round",
    "checkpoint",
    "baseline",
    "candidate",
    "helpful",
    "safe",
    "code",
    "reasoning",
    "explain",
    "because",
    "therefore",
]
LS_LABEL_CONFIG = (
    '<View><Text name="prompt" value="$prompt"/><Text name="a" value="$a"/><Text name="b" value="$b"/>'
    '<Choices name="choice" toName="prompt"><Choice value="A"/><Choice value="B"/></Choices></View>'
)
LS_ADMIN = "admin@annbench.local"


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def pairs_data(n: int, seed: int) -> list[tuple[str, str, str]]:
    """The same pairs for both targets: a ~25-word question, two ~80-word answers."""
    rng = random.Random(seed)
    return [(f"Question {seed}-{i}: {sentence(rng, 25)}", sentence(rng, 80), sentence(rng, 80)) for i in range(n)]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


# --- A small HTTP/1.1 keep-alive client (asyncio) ---------------------------------------


class Http:
    """One annotator's connection. Reconnects when the server closed it (a sync worker's
    ``Connection: close``, an idle keep-alive timeout); the reconnect is in the latency."""

    def __init__(self, host: str, port: int, token: str, resend_post: bool = True):
        self.host, self.port = host, port
        # Resending a request whose keep-alive connection turned out closed is safe for
        # ours (next returns the live lease, a judgment submit is idempotent), not for a
        # Label Studio annotation POST (it could save a second annotation).
        self.resend_post = resend_post
        self.prefix = (
            f"Host: {host}:{port}\r\nAuthorization: Token {token}\r\n"
            "Accept: application/json\r\nUser-Agent: annotate-bench\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        self.reader = self.writer = None

    async def request(self, method: str, path: str, payload=None, timeout: float = 60.0) -> tuple[int, bytes]:
        body = json.dumps(payload).encode() if payload is not None else b""
        head = f"{method} {path} HTTP/1.1\r\n{self.prefix}"
        if payload is not None:
            head += "Content-Type: application/json\r\n"
        raw = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        try:
            return await asyncio.wait_for(self._exchange(raw, method == "GET" or self.resend_post), timeout)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, raw: bytes, may_resend: bool) -> tuple[int, bytes]:
        for _attempt in range(2 if may_resend else 1):
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.connects += 1
            try:
                self.writer.write(raw)
                await self.writer.drain()
                line = await self.reader.readline()
            except (ConnectionError, OSError):
                line = b""
            if line:
                break
            self.close()
            if not reused or not may_resend:
                raise ConnectionError("the server closed the connection without an answer")
        parts = line.split()
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            h = await self.reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(chunks)
        else:
            data = await self.reader.read()
            headers["connection"] = "close"
        conn = headers.get("connection", "").lower()
        if conn == "close" or (parts[0] == b"HTTP/1.0" and conn != "keep-alive"):
            self.close()
        return status, data


# --- Load ----------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {"next": [], "submit": []}
        self.ends: dict[str, list[float]] = {"next": [], "submit": []}
        self.status: dict[str, dict[str, int]] = {"next": {}, "submit": {}}
        self.pairs = 0  # submits accepted (201) that completed inside the window
        self.pairs_late = 0  # accepted after the window (in flight at its end)
        self.no_work = 0
        self.errors: dict[str, int] = {}
        self.unfinished = 0
        # Label Studio, client side: task id -> annotators it was handed to, and who submitted.
        self.handed: dict[int, set[int]] = {}
        self.held: dict[int, set[int]] = {}
        self.concurrent: set[int] = set()  # handed to a second annotator while the first held it
        self.overbooked: set[int] = set()  # handed to more annotators than the overlap
        self.repeat = 0  # the same task handed to the same annotator again while held (a reload)
        self.again_after_submit = 0

    def add(self, op: str, started: float, ended: float, status: int | str) -> None:
        self.lat[op].append((ended - started) * 1000)
        self.ends[op].append(ended)
        key = str(status)
        self.status[op][key] = self.status[op].get(key, 0) + 1

    def error(self, op: str, exc: BaseException) -> None:
        key = f"{op}:{type(exc).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def ls_handed(self, task: int, who: int, overlap: int) -> None:
        holders = self.held.setdefault(task, set())
        if who in holders:
            self.repeat += 1
            return
        everyone = self.handed.setdefault(task, set())
        if who in everyone:
            self.again_after_submit += 1
        if holders:
            self.concurrent.add(task)
        everyone.add(who)
        holders.add(who)
        if len(everyone) > overlap:
            self.overbooked.add(task)

    def ls_submitted(self, task: int, who: int) -> None:
        self.held.get(task, set()).discard(who)


class Target:
    name = ""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def next(self, conn: Http, project) -> tuple[int, object | None, bool]:
        """(status, pair handle or None, exhausted)."""
        raise NotImplementedError

    async def submit(self, conn: Http, handle) -> int:
        raise NotImplementedError


class OursTarget(Target):
    name = "ours"

    async def next(self, conn, project):
        status, body = await conn.request("POST", f"/api/v1/projects/{project}/assignments/next/", {})
        if status != 200:
            return status, None, False
        data = json.loads(body)
        pair = data["pair"]
        if pair is None:
            return status, None, data.get("retry_after_seconds") is None
        return status, pair["assignment"], False

    async def submit(self, conn, handle):
        status, _ = await conn.request(
            "POST",
            f"/api/v1/assignments/{handle}/judgment/",
            {"choice": random.choice(("left", "right")), "strength": "better", "safety": "both_safe"},
        )
        return status


class LabelStudioTarget(Target):
    name = "labelstudio"

    async def next(self, conn, project):
        status, body = await conn.request("GET", f"/api/projects/{project}/next/")
        if status == 404:
            return status, None, True
        if status != 200:
            return status, None, False
        return status, json.loads(body)["id"], False

    async def submit(self, conn, handle):
        status, _ = await conn.request(
            "POST",
            f"/api/tasks/{handle}/annotations/",
            {
                "result": [
                    {
                        "from_name": "choice",
                        "to_name": "prompt",
                        "type": "choices",
                        "value": {"choices": [random.choice(("A", "B"))]},
                    }
                ],
                "lead_time": 2.0,
            },
        )
        return status


async def annotator(
    target: Target,
    conn: Http,
    who: int,
    project,
    stats: Stats,
    deadline: float,
    think: tuple[float, float] | None,
    overlap: int,
    start_delay: float,
) -> None:
    if start_delay:
        await asyncio.sleep(start_delay)
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            status, handle, exhausted = await target.next(conn, project)
        except Exception as exc:
            stats.error("next", exc)
            await asyncio.sleep(0.2)
            continue
        stats.add("next", t0, time.perf_counter(), status)
        if handle is None:
            stats.no_work += 1
            if exhausted and status in (200, 404):
                return
            await asyncio.sleep(0.5)
            continue
        if isinstance(target, LabelStudioTarget):
            stats.ls_handed(handle, who, overlap)
        if think:
            await asyncio.sleep(random.uniform(*think))
        t0 = time.perf_counter()
        try:
            status = await target.submit(conn, handle)
        except Exception as exc:
            stats.error("submit", exc)
            continue
        t1 = time.perf_counter()
        stats.add("submit", t0, t1, status)
        if status in (200, 201):
            if isinstance(target, LabelStudioTarget):
                stats.ls_submitted(handle, who)
            if t1 <= deadline:
                stats.pairs += 1
            else:
                stats.pairs_late += 1


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def machine_busy() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def wait_idle(limit_pct: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until the machine is quiet: a load test beside another
    job measures both. Returns the last busy share seen."""
    end = time.time() + max_wait
    while True:
        a = machine_busy()
        time.sleep(2)
        b = machine_busy()
        busy = 100 * (b[0] - a[0]) / max(1, b[1] - a[1])
        if busy <= limit_pct or time.time() > end:
            if busy > limit_pct:
                print(f"  warning: the machine is {busy:.0f}% busy with other work; numbers will be low", flush=True)
            return busy
        print(f"  machine {busy:.0f}% busy with other work; waiting", flush=True)


async def run_level(
    target: Target,
    tokens: list[str],
    project,
    n: int,
    seconds: float,
    think: tuple[float, float] | None,
    overlap: int,
    server_pid: int,
    grace: float = 60.0,
    py_spy: str = "",
    spy_out: Path | None = None,
    rate: int = 50,
) -> dict:
    stats = Stats()
    spy = None
    if py_spy and spy_out is not None:
        # Sample the server (all its processes) while the level runs; CPU samples only.
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server_pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--duration",
                str(int(seconds)),
                "--output",
                str(spy_out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    conns = [Http(target.host, target.port, tokens[i], resend_post=isinstance(target, OursTarget)) for i in range(n)]
    server_pids = process_tree(server_pid)
    pg = postgres_pids()
    cpu0 = (cpu_seconds(server_pids), cpu_seconds(pg), time.process_time(), machine_busy())
    started = time.perf_counter()
    deadline = started + seconds
    tasks = [
        asyncio.create_task(
            annotator(
                target,
                conns[i],
                i,
                project,
                stats,
                deadline,
                think,
                overlap,
                random.uniform(0, think[1]) if think else 0.0,
            )
        )
        for i in range(n)
    ]
    done, pending = await asyncio.wait(tasks, timeout=seconds + grace)
    for t in pending:
        t.cancel()
    stats.unfinished = len(pending)
    if pending:
        await asyncio.wait(pending, timeout=5)
    ended = time.perf_counter()
    if spy is not None:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
    server_pids = process_tree(server_pid)
    busy1 = machine_busy()
    wall = ended - started
    for c in conns:
        c.close()
    cpu = {
        "server_cores": (cpu_seconds(server_pids) - cpu0[0]) / wall,
        "postgres_cores": (cpu_seconds(postgres_pids()) - cpu0[1]) / wall,
        "client_cores": (time.process_time() - cpu0[2]) / wall,
        "machine_busy_pct": 100 * (busy1[0] - cpu0[3][0]) / max(1, busy1[1] - cpu0[3][1]),
    }
    # Whatever else ran on the machine meanwhile (it skews the numbers: say so).
    cpu["other_cores"] = max(
        0.0,
        (os.cpu_count() or 1) * cpu["machine_busy_pct"] / 100
        - cpu["server_cores"]
        - cpu["postgres_cores"]
        - cpu["client_cores"],
    )
    for t in done:
        if t.exception():
            stats.error("task", t.exception())
    result = {
        "annotators": n,
        "seconds": seconds,
        "wall": round(wall, 2),
        "think": think,
        "pairs": stats.pairs,
        "pairs_late": stats.pairs_late,
        "pairs_per_s": stats.pairs / seconds,
        "no_work": stats.no_work,
        "status": stats.status,
        "errors": stats.errors,
        "unfinished_annotators": stats.unfinished,
        "connects": sum(c.connects for c in conns),
        "cpu": cpu,
    }
    for op in ("next", "submit"):
        v = stats.lat[op]
        result[op] = {
            "count": len(v),
            "p50": pct(v, 50),
            "p95": pct(v, 95),
            "p99": pct(v, 99),
            "max": max(v) if v else float("nan"),
            "mean": sum(v) / len(v) if v else float("nan"),
        }
        # Does it slow down as the run goes on? p50 of the first and of the last fifth.
        ordered = [lat for _, lat in sorted(zip(stats.ends[op], v))]
        fifth = max(1, len(ordered) // 5)
        result[op]["p50_first_fifth"] = pct(ordered[:fifth], 50)
        result[op]["p50_last_fifth"] = pct(ordered[-fifth:], 50)
    if isinstance(target, LabelStudioTarget):
        result["ls_client"] = {
            "tasks_handed": len(stats.handed),
            "handed_to_two_at_once": len(stats.concurrent),
            "overbooked": len(stats.overbooked),
            "repeat_while_held": stats.repeat,
            "handed_again_after_submit": stats.again_after_submit,
        }
    return result


def project_names(levels: list[tuple[str, int, float]], retries: int) -> list[str]:
    """One fresh project per level and attempt (a retried level starts from the same state)."""
    return [f"annbench-{mode}-{n}-{a}" for mode, n, _ in levels for a in range(retries + 1)]


def run_levels(
    args,
    target: Target,
    tokens: list[str],
    levels,
    project_of,
    server_pid: int,
    grace: float,
    spy_dir: Path | None = None,
    before_level=None,
) -> list[dict]:
    """Each level in turn, on a quiet machine; a level that shared the CPU with other work
    (more than --max-other cores) is run again on a fresh project, up to --retries times."""
    out = []
    for mode, n, seconds in levels:
        think = (args.think_min, args.think_max) if mode == "realistic" else None
        others = []
        for attempt in range(args.retries + 1):
            if before_level is not None:
                before_level()
            busy = wait_idle(args.idle_pct, args.idle_wait)
            name = f"annbench-{mode}-{n}-{attempt}"
            spy_out = spy_dir / f"py-spy-{mode}-{n}-{attempt}.txt" if spy_dir else None
            r = sync_call(
                run_level(
                    target,
                    tokens,
                    project_of(name),
                    n,
                    seconds,
                    think,
                    args.overlap,
                    server_pid,
                    grace=grace,
                    py_spy=getattr(args, "py_spy", ""),
                    spy_out=spy_out,
                    rate=getattr(args, "py_spy_rate", 50),
                )
            )
            r.update(mode=mode, project=name, attempt=attempt, busy_before_pct=round(busy, 1))
            print_level(mode, r)
            if spy_out is not None:
                print_spy(spy_out, args.profile_top)
            others.append(round(r["cpu"]["other_cores"], 2))
            if r["cpu"]["other_cores"] <= args.max_other:
                break
            if attempt < args.retries:
                print(
                    f"  other work took {r['cpu']['other_cores']:.2f} cores meanwhile: running this level again",
                    flush=True,
                )
        r["other_cores_per_attempt"] = others
        out.append(r)
    return out


def print_level(mode: str, r: dict) -> None:
    n, s = r["next"], r["submit"]
    extra = ""
    if "ls_client" in r:
        extra = (
            f" handed-to-2-at-once={r['ls_client']['handed_to_two_at_once']} overbooked={r['ls_client']['overbooked']}"
        )
    print(
        f"  {mode:<9} N={r['annotators']:<4} pairs/s={r['pairs_per_s']:7.1f} ({r['pairs']} in {r['seconds']:.0f}s)"
        f"  next p50/p95/p99={n['p50']:.1f}/{n['p95']:.1f}/{n['p99']:.1f} ms"
        f"  submit p50/p95/p99={s['p50']:.1f}/{s['p95']:.1f}/{s['p99']:.1f} ms"
        f"  no-work={r['no_work']} errors={r['errors'] or 0} status={r['status']}"
        f"  cpu server/pg/client/other={r['cpu']['server_cores']:.2f}/{r['cpu']['postgres_cores']:.2f}/"
        f"{r['cpu']['client_cores']:.2f}/{r['cpu']['other_cores']:.2f} cores, machine "
        f"{r['cpu']['machine_busy_pct']:.0f}%{extra}",
        flush=True,
    )


# --- Servers --------------------------------------------------------------------------------


def wait_http(host: str, port: int, path: str, proc: subprocess.Popen, timeout: float) -> None:
    import http.client

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before answering")
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server on {host}:{port} did not answer in {timeout:.0f}s")


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def pg_recreate(name: str) -> None:
    base = ["-h", PG["host"], "-p", PG["port"], "-U", PG["user"]]
    subprocess.run(["dropdb", *base, "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", *base, name], check=True)


def sync_call(coro):
    return asyncio.run(coro)


async def http_json(
    host: str, port: int, token: str, method: str, path: str, payload=None, timeout: float = 600
) -> tuple[int, object]:
    conn = Http(host, port, token)
    try:
        status, body = await conn.request(method, path, payload, timeout=timeout)
    finally:
        conn.close()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body[:500]


# --- Ours -------------------------------------------------------------------------------------


GUNICORN_PROFILE_CONF = """
import cProfile, json, os, re, time
_prof = None
_sql = {}
_views = {}
_t = {}
OUT = %(out)r
_num = re.compile(r"\\b\\d+\\b")

def _wrapper(execute, sql, params, many, context):
    t0 = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        key = _num.sub("N", " ".join(sql.split()))[:400]
        e = _sql.setdefault(key, [0, 0.0])
        e[0] += 1
        e[1] += time.perf_counter() - t0

def post_fork(server, worker):
    global _prof
    _prof = cProfile.Profile()
    _prof.enable()

def pre_request(worker, req):
    from django.db import connection
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_wrapper)
    _t["start"] = time.perf_counter()
    _t["sql0"] = sum(v[0] for v in _sql.values())

def post_request(worker, req, environ, resp):
    kind = "next" if req.path.endswith("/next/") else "submit" if req.path.endswith("/judgment/") else "other"
    e = _views.setdefault(kind, [0, 0.0, 0])
    e[0] += 1
    e[1] += time.perf_counter() - _t["start"]
    e[2] += sum(v[0] for v in _sql.values()) - _t["sql0"]

def worker_exit(server, worker):
    _prof.disable()
    _prof.dump_stats(os.path.join(OUT, "worker-%%d.prof" %% os.getpid()))
    with open(os.path.join(OUT, "worker-%%d.json" %% os.getpid()), "w") as f:
        json.dump({"sql": _sql, "views": _views}, f)
"""


def ours_env(args, db_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "DATABASE_URL": db_url,
            "LOG_LEVEL": "WARNING",
        }
    )
    env.pop("REDIS_URL", None)
    return env


def run_ours(args, levels: list[tuple[str, int, float]]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="annbench-"))
    if args.db == "postgres":
        pg_recreate(args.db_name)
        db_url = f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{args.db_name}"
    else:
        db_url = f"sqlite:///{tmp / 'db.sqlite3'}"
    env = ours_env(args, db_url)
    py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
    t0 = time.perf_counter()
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    spec = {
        "projects": project_names(levels, args.retries) + ["annbench-warmup"],
        "comparisons": args.comparisons,
        "overlap": args.overlap,
        "annotators": max(n for _, n, _ in levels),
        "analyze": not args.no_analyze,
    }
    out = subprocess.run(
        [py, __file__, "--_django", "seed", json.dumps(spec)], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE
    ).stdout
    seed = json.loads(out.decode().strip().splitlines()[-1])
    print(
        f"seeded {len(spec['projects'])} projects x {args.comparisons} comparisons, "
        f"{spec['annotators']} annotators in {time.perf_counter() - t0:.1f}s ({args.db})",
        flush=True,
    )
    workers = args.workers or 2 * (os.cpu_count() or 1) + 1
    worker_class = "sync" if args.profile else args.worker_class
    cmd = [
        str(Path(py).parent / "gunicorn"),
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--workers",
        str(1 if args.profile else workers),
        "--worker-class",
        worker_class,
        "--timeout",
        "120",
        "--log-level",
        "warning",
        "--worker-tmp-dir",
        "/dev/shm",
    ]
    if worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    if args.profile:
        prof_dir = tmp / "profile"
        prof_dir.mkdir()
        conf = tmp / "gunicorn_profile.py"
        conf.write_text(GUNICORN_PROFILE_CONF % {"out": str(prof_dir)})
        cmd += ["-c", str(conf)]
    setting = " ".join(cmd[2:])
    print("server:", setting, flush=True)
    log = open(tmp / "gunicorn.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results: dict = {
        "target": "ours",
        "db": args.db,
        "server": setting,
        "analyzed": not args.no_analyze,
        "workers": workers,
        "worker_class": worker_class,
        "threads": args.threads if worker_class == "gthread" else 1,
        "comparisons": args.comparisons,
        "overlap": args.overlap,
        "levels": [],
    }
    try:
        wait_http("127.0.0.1", args.port, "/healthz", proc, 60)
        target = OursTarget("127.0.0.1", args.port)
        tokens = seed["tokens"]
        sync_call(
            run_level(
                target, tokens, "annbench-warmup", min(10, len(tokens)), 3, None, args.overlap, proc.pid, grace=30
            )
        )
        analyze = None
        if args.db == "postgres" and not args.no_analyze:

            def analyze() -> None:
                # This PostgreSQL runs with autovacuum = off (its CI configuration); in
                # production autovacuum keeps the planner's statistics fresh as the
                # assignment and judgment tables grow. Do its work between levels.
                subprocess.run(
                    [
                        "psql",
                        "-h",
                        PG["host"],
                        "-p",
                        PG["port"],
                        "-U",
                        PG["user"],
                        "-d",
                        args.db_name,
                        "-qc",
                        "ANALYZE",
                    ],
                    check=True,
                )

        results["levels"] = run_levels(
            args,
            target,
            tokens,
            levels,
            lambda name: name,
            proc.pid,
            60,
            spy_dir=tmp if args.py_spy else None,
            before_level=analyze,
        )
    finally:
        stop(proc)
        log.close()
    verify = subprocess.run(
        [
            py,
            __file__,
            "--_django",
            "verify",
            json.dumps({"projects": [r["project"] for r in results["levels"]], "explain": args.explain}),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    results["verify"] = json.loads(verify.decode().strip().splitlines()[-1])
    for r in results["levels"]:
        r["verify"] = results["verify"][r["project"]]
    print_verify(results["verify"])
    if args.profile:
        print_profile(tmp / "profile", args.profile_top)
    if args.keep:
        print("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def print_verify(v: dict) -> None:
    for name, p in v.items():
        if name.startswith("_"):
            continue
        print(f"  check {name}: " + ", ".join(f"{k}={val}" for k, val in p.items()), flush=True)
    for plan in v.get("_explain", []):
        print("  EXPLAIN ANALYZE", plan["query"][:160])
        for line in plan["plan"]:
            print("    " + line)


def print_profile(prof_dir: Path, top: int) -> None:
    import pstats

    files = sorted(prof_dir.glob("worker-*.prof"))
    if not files:
        print("no profile written (the worker did not exit cleanly?)")
        return
    stats = pstats.Stats(*map(str, files), stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    sql: dict[str, list] = {}
    views: dict[str, list] = {}
    for f in prof_dir.glob("worker-*.json"):
        data = json.loads(f.read_text())
        for k, (n, t) in data["sql"].items():
            e = sql.setdefault(k, [0, 0.0])
            e[0] += n
            e[1] += t
        for k, (n, t, q) in data["views"].items():
            e = views.setdefault(k, [0, 0.0, 0])
            e[0] += n
            e[1] += t
            e[2] += q
    print("requests (inside the worker): kind, count, mean ms, SQL statements per request")
    for k, (n, t, q) in sorted(views.items()):
        print(f"  {k:<7} {n:>6} {1000 * t / max(n, 1):8.2f} ms {q / max(n, 1):6.1f}")
    total = sum(t for _, t in sql.values())
    print(f"SQL statements by total time ({total:.2f}s in all):")
    for k, (n, t) in sorted(sql.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {t:7.2f}s {n:>7}x {1000 * t / n:7.3f} ms  {k[:300]}")


def print_spy(path: Path, top: int) -> None:
    """Summarise py-spy's collapsed stacks: where the server's CPU samples fall."""
    if not path.exists():
        print("  (py-spy wrote nothing)")
        return
    total = 0
    incl: dict[str, int] = {}
    leaf: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
    print(f"  py-spy: {total} CPU samples of the server processes; inclusive share of app-relevant frames:")
    interesting = (
        "annotation/",
        "authentication",
        "rest_framework/views.py",
        "rest_framework/request.py",
        "serializers.py",
        "compiler.py",
        "psycopg",
        "middleware",
        "handle_request",
        "renderers.py",
        "query.py",
        "base.py",
    )
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1]):
        if any(k in f for k in interesting) and n / total > 0.01:
            print(f"    {100 * n / total:5.1f}%  {f}")
            top -= 1
            if top <= 0:
                break
    print("  leaf (self) frames:")
    for f, n in sorted(leaf.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    {100 * n / total:5.1f}%  {f}")


# Run under Django (the project's interpreter, env from ours_env): seeding and checks.
def django_task(task: str, spec: dict) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    if task == "seed":
        from accounts.roles import Role
        from accounts.services import api_token_create, user_create
        from annotation.services import project_create
        from imports.services import ImportKind, ImportOptions, import_run

        for i, slug in enumerate(spec["projects"]):
            project = project_create(
                name=slug, slug=slug, overlap=spec["overlap"], require_safety=False, edit_policy="off"
            )
            lines = [
                json.dumps({"input": p, "output_1": a, "output_2": b})
                for p, a, b in pairs_data(spec["comparisons"], seed=i)
            ]
            report = import_run(
                stream=io.BytesIO("\n".join(lines).encode()),
                filename="pairs.jsonl",
                options=ImportOptions(
                    kind=ImportKind.PAIRS, project=project, source="bench", model_a="bench-a", model_b="bench-b"
                ),
            )
            if not report.committed:
                raise SystemExit(f"seeding {slug} failed: {report.errors[:3]}")
        tokens = []
        for i in range(spec["annotators"]):
            user = user_create(username=f"annbench{i}", password=None, roles=[Role.ANNOTATOR])
            tokens.append(api_token_create(user=user, name="bench")[1])
        if spec["analyze"] and connection.vendor == "postgresql":
            # What autovacuum does within a minute of a bulk import in production; the
            # PostgreSQL here runs with autovacuum off (CI configuration), so say it.
            with connection.cursor() as cur:
                cur.execute("ANALYZE")
        print(json.dumps({"tokens": tokens}))
        return

    # verify
    out: dict = {}
    with connection.cursor() as cur:

        def one(sql: str, params) -> int:
            cur.execute(sql, params)
            return cur.fetchone()[0]

        for slug in spec["projects"]:
            cur.execute(
                "SELECT r.id FROM annotation_round r JOIN annotation_project p ON p.id = r.project_id "
                "WHERE p.slug = %s",
                [slug],
            )
            rounds = [r[0] for r in cur.fetchall()]
            rin = "(" + ",".join(str(r) for r in rounds) + ")"
            comp = f"SELECT id FROM annotation_comparison WHERE round_id IN {rin}"
            out[slug] = {
                "judgments": one(f"SELECT count(*) FROM annotation_judgment WHERE comparison_id IN ({comp})", []),
                "assignments": one(f"SELECT count(*) FROM annotation_assignment WHERE comparison_id IN ({comp})", []),
                "open_leases": one(
                    f"SELECT count(*) FROM annotation_assignment WHERE status = 'active' AND comparison_id IN ({comp})",
                    [],
                ),
                "over_judged": one(
                    f"SELECT count(*) FROM annotation_comparison c WHERE c.round_id IN {rin} AND "
                    "(SELECT count(*) FROM annotation_judgment j WHERE j.comparison_id = c.id) > c.required_judgments",
                    [],
                ),
                "judgment_pair_twice": one(
                    "SELECT count(*) FROM (SELECT comparison_id, annotator_id FROM annotation_judgment "
                    f"WHERE comparison_id IN ({comp}) GROUP BY 1, 2 HAVING count(*) > 1) x",
                    [],
                ),
                "assignment_pair_twice": one(
                    "SELECT count(*) FROM (SELECT comparison_id, annotator_id FROM annotation_assignment "
                    f"WHERE comparison_id IN ({comp}) GROUP BY 1, 2 HAVING count(*) > 1) x",
                    [],
                ),
                # Handed to more annotators than required at one time: at the moment each lease
                # started, the slots held on its comparison (live leases + judgments; a skipped
                # or expired lease holds its slot until it ended).
                "double_booked": one(
                    "SELECT count(DISTINCT a.comparison_id) FROM annotation_assignment a "
                    "JOIN annotation_comparison c ON c.id = a.comparison_id "
                    f"WHERE c.round_id IN {rin} AND NOT c.is_gold AND ("
                    "  SELECT count(*) FROM annotation_assignment b WHERE b.comparison_id = a.comparison_id"
                    "  AND b.leased_at <= a.leased_at AND (b.status IN ('active', 'submitted')"
                    "       OR COALESCE(b.completed_at, b.lease_expires_at) > a.leased_at)"
                    ") > c.required_judgments",
                    [],
                ),
                "counters_off": one(
                    f"SELECT count(*) FROM annotation_comparison c WHERE c.round_id IN {rin} AND ("
                    "c.judgment_count <> (SELECT count(*) FROM annotation_judgment j WHERE j.comparison_id = c.id) OR "
                    "c.taken <> (SELECT count(*) FROM annotation_assignment a WHERE a.comparison_id = c.id "
                    "AND a.status IN ('active', 'submitted')))",
                    [],
                ),
            }
        if spec.get("explain") and connection.vendor == "postgresql":
            out["_explain"] = explain_picks(cur, spec["projects"])
    print(json.dumps(out))


def explain_picks(cur, slugs: list[str]) -> list[dict]:
    """EXPLAIN ANALYZE of the statements the engine's pool scans run (``_pick``, captured
    as they are sent, so this follows the engine's SQL), for the busiest annotator of the
    first project; in a transaction that is rolled back."""
    from django.db import connection, transaction

    from annotation import assignment as engine

    slug = slugs[0]
    cur.execute(
        "SELECT r.id FROM annotation_round r JOIN annotation_project p ON p.id = r.project_id WHERE p.slug = %s", [slug]
    )
    rounds = [r[0] for r in cur.fetchall()]
    cur.execute(
        "SELECT a.annotator_id, count(*) FROM annotation_assignment a JOIN annotation_comparison c "
        "ON c.id = a.comparison_id WHERE c.round_id = ANY(%s) GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
        [rounds],
    )
    row = cur.fetchone()
    if not row:
        return []
    annotator = row[0]
    captured: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    plans = []
    try:
        with transaction.atomic():
            with connection.execute_wrapper(capture):
                for pool in ("partly", "fresh"):
                    engine._pick(rounds, annotator, pool)
            with connection.cursor() as c2:
                for sql, params in captured:
                    if "annotation_comparison" not in sql or not sql.lstrip().upper().startswith("SELECT"):
                        continue
                    c2.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                    plans.append(
                        {
                            "query": f"{slug} annotator {annotator}: " + " ".join(sql.split())[:300],
                            "plan": [r[0] for r in c2.fetchall()],
                        }
                    )
            transaction.set_rollback(True)
    except Exception as exc:
        plans.append({"query": f"could not EXPLAIN the engine's scans: {exc!r}", "plan": []})
    return plans


# --- Label Studio ---------------------------------------------------------------------------


def ls_env(args, data_dir: Path, token: str) -> dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("LABEL_STUDIO_", "DJANGO_", "POSTGRE_")) or k in ("USERNAME", "PASSWORD", "DATABASE_URL"):
            env.pop(k)
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # No telemetry (nothing outside this machine is reachable anyway).
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "COLLECT_ANALYTICS": "false",
        }
    )
    if args.ls_db == "postgres":
        env.update(
            {
                "DJANGO_DB": "default",
                "POSTGRE_NAME": args.ls_db_name,
                "POSTGRE_USER": PG["user"],
                "POSTGRE_PASSWORD": "",
                "POSTGRE_HOST": PG["host"],
                "POSTGRE_PORT": PG["port"],
            }
        )
    else:
        env["DJANGO_DB"] = "sqlite"
    return env


def ls_django_task(task: str, spec: dict) -> None:
    """Run by Label Studio's interpreter, with its settings (as `label-studio user` does)."""
    import label_studio

    sys.path.insert(0, os.path.dirname(label_studio.__file__))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
    import django

    django.setup()
    from django.db.models import Count, F, Q

    if task == "tokens":
        from rest_framework.authtoken.models import Token
        from users.models import User

        out = {}
        for email in spec["emails"]:
            user = User.objects.get(email=email)
            out[email] = Token.objects.get_or_create(user=user)[0].key
        print(json.dumps(out))
        return
    from tasks.models import Annotation, Task

    out = {}
    for name, pid in spec["projects"].items():
        tasks = Task.objects.filter(project_id=pid)
        counted = tasks.annotate(n=Count("annotations", filter=Q(annotations__was_cancelled=False)))
        out[name] = {
            "annotations": Annotation.objects.filter(task__project_id=pid).count(),
            "tasks_overlap": sorted(set(tasks.values_list("overlap", flat=True)))[:5],
            "over_annotated": counted.filter(n__gt=F("overlap")).count(),
            "annotation_pair_twice": Annotation.objects.filter(task__project_id=pid)
            .values("task_id", "completed_by_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count(),
            "locks_left": Task.objects.filter(project_id=pid, locks__isnull=False).distinct().count(),
        }
    print(json.dumps(out))


def run_labelstudio(args, levels: list[tuple[str, int, float]]) -> dict:
    url = urllib.parse.urlsplit(args.ls_url)
    host, port = url.hostname, url.port or 80
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("--ls-url must be on 127.0.0.1")
    venv = Path(args.ls_venv)
    ls_py = str(venv / "bin" / "python")
    data_dir = Path(tempfile.mkdtemp(prefix="annbench-ls-"))
    token = args.ls_token or secrets.token_hex(20)
    env = ls_env(args, data_dir, token)
    if args.ls_db == "postgres":
        pg_recreate(args.ls_db_name)
    password = secrets.token_urlsafe(12)
    cmd = [
        str(venv / "bin" / "label-studio"),
        "start",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--username",
        LS_ADMIN,
        "--password",
        password,
        "--user-token",
        token,
        "--enable-legacy-api-token",
        "--data-dir",
        str(data_dir),
    ]
    print(
        "server:",
        " ".join(cmd[1:]).replace(token, "<token>").replace(password, "<password>"),
        f"(DJANGO_DB={env['DJANGO_DB']})",
        flush=True,
    )
    log = open(data_dir / "label-studio.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(data_dir)
    )
    results: dict = {
        "target": "labelstudio",
        "db": args.ls_db,
        "server": " ".join(cmd[1:6]),
        "comparisons": args.comparisons,
        "overlap": args.overlap,
        "levels": [],
    }
    try:
        wait_http(host, port, "/health", proc, 600)
        print(f"Label Studio up in {time.perf_counter() - t0:.0f}s", flush=True)
        t0 = time.perf_counter()
        projects = {}
        names = project_names(levels, args.retries) + ["annbench-warmup"]
        for i, name in enumerate(names):
            status, proj = sync_call(
                http_json(
                    host,
                    port,
                    token,
                    "POST",
                    "/api/projects/",
                    {
                        "title": name,
                        "label_config": LS_LABEL_CONFIG,
                        "maximum_annotations": args.overlap,
                        "overlap_cohort_percentage": 100,
                    },
                )
            )
            if status != 201:
                raise SystemExit(f"project creation failed: {status} {proj}")
            tasks = [{"prompt": p, "a": a, "b": b} for p, a, b in pairs_data(args.comparisons, seed=i)]
            status, rep = sync_call(http_json(host, port, token, "POST", f"/api/projects/{proj['id']}/import", tasks))
            if status != 201:
                raise SystemExit(f"import failed: {status} {rep}")
            projects[name] = proj["id"]
        n_users = max(n for _, n, _ in levels)
        emails = [f"annbench{i}@annbench.local" for i in range(n_users)]

        async def make_users():
            for email in emails:
                status, body = await http_json(
                    host, port, token, "POST", "/api/users/", {"email": email, "username": email.split("@")[0]}
                )
                if status != 201:
                    raise SystemExit(f"user creation failed: {status} {body}")

        sync_call(make_users())
        with open(data_dir / "ls-django.log", "a") as err:
            out = subprocess.run(
                [ls_py, __file__, "--_ls-django", "tokens", json.dumps({"emails": emails})],
                env=env,
                check=True,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=str(data_dir),
            ).stdout
        by_email = json.loads(out.decode().strip().splitlines()[-1])
        tokens = [by_email[e] for e in emails]
        print(
            f"seeded {len(names)} projects x {args.comparisons} tasks (maximum_annotations={args.overlap}), "
            f"{n_users} annotators in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        target = LabelStudioTarget(host, port)
        sync_call(
            run_level(
                target,
                tokens,
                projects["annbench-warmup"],
                min(5, len(tokens)),
                3,
                None,
                args.overlap,
                proc.pid,
                grace=60,
            )
        )
        results["levels"] = run_levels(args, target, tokens, levels, projects.__getitem__, proc.pid, args.ls_grace)
    finally:
        stop(proc, timeout=30)
        log.close()
    errors: dict[str, int] = {}
    for line in (data_dir / "label-studio.log").read_text(errors="replace").splitlines():
        if any(k in line for k in ("Error:", "Exception:", "OperationalError", "locked", "too many clients")):
            key = line.strip()[:200]
            errors[key] = errors.get(key, 0) + 1
    results["server_errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:8])
    for line, count in results["server_errors"].items():
        print(f"  Label Studio log: {count}x {line}")
    with open(data_dir / "ls-django.log", "a") as err:
        out = subprocess.run(
            [
                ls_py,
                __file__,
                "--_ls-django",
                "verify",
                json.dumps({"projects": {r["project"]: projects[r["project"]] for r in results["levels"]}}),
            ],
            env=env,
            check=True,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=str(data_dir),
        ).stdout
    results["verify"] = json.loads(out.decode().strip().splitlines()[-1])
    for r in results["levels"]:
        r["verify"] = results["verify"].get(r["project"], {})
    print_verify(results["verify"])
    if args.keep:
        print("kept", data_dir)
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    return results


# --- Report -----------------------------------------------------------------------------------


def fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def report(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    label = {
        ("ours", "postgres"): "ours (PostgreSQL)",
        ("ours", "sqlite"): "ours (SQLite)",
        ("labelstudio", "sqlite"): "Label Studio (SQLite)",
        ("labelstudio", "postgres"): "Label Studio (PostgreSQL)",
    }
    cols = [label.get((r["target"], r["db"]), r["target"]) for r in runs]

    def level(run, mode, n):
        for lv in run["levels"]:
            if lv["mode"] == mode and lv["annotators"] == n:
                return lv
        return None

    def double(run, mode, n):
        lv = level(run, mode, n)
        if lv is None:
            return "–"
        if run["target"] == "ours":
            return str(lv["verify"]["double_booked"])
        c = lv["ls_client"]
        return f"{c['overbooked']} (over-annotated {lv['verify'].get('over_annotated', '?')})"

    keys = sorted(
        {(lv["mode"], lv["annotators"]) for r in runs for lv in r["levels"]}, key=lambda k: (k[0] != "capacity", k[1])
    )
    print("| mode | N | metric | " + " | ".join(cols) + " |")
    print("|---|---:|---|" + "---:|" * len(cols))
    for mode, n in keys:
        rows = [("pairs/s", lambda lv: fmt(lv["pairs_per_s"]))] if mode == "capacity" else []
        rows += [
            ("next p50 / p95 / p99 ms", lambda lv: " / ".join(fmt(lv["next"][q]) for q in ("p50", "p95", "p99"))),
            ("submit p50 / p95 / p99 ms", lambda lv: " / ".join(fmt(lv["submit"][q]) for q in ("p50", "p95", "p99"))),
        ]
        for metric, f in rows:
            cells = [f(lv) if (lv := level(r, mode, n)) else "–" for r in runs]
            print(f"| {mode} | {n} | {metric} | " + " | ".join(cells) + " |")
        print(f"| {mode} | {n} | double-booked | " + " | ".join(double(r, mode, n) for r in runs) + " |")
    ours = [r for r in runs if r["target"] == "ours"]
    others = [r for r in runs if r["target"] != "ours"]
    if ours and others:
        print()
        for o in others:
            ratios = []
            for n in sorted({lv["annotators"] for lv in ours[0]["levels"] if lv["mode"] == "capacity"}):
                a, b = level(ours[0], "capacity", n), level(o, "capacity", n)
                if a and b and b["pairs_per_s"]:
                    ratios.append(f"N={n}: {a['pairs_per_s'] / b['pairs_per_s']:.1f}x")
            print(f"capacity, {cols[runs.index(ours[0])]} / {cols[runs.index(o)]}: " + ", ".join(ratios))


# --- Main -----------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured (and whether application files differed from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "annotation", "config", "models_service", "rlhf_export"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + (" + uncommitted application changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_django":
        django_task(sys.argv[2], json.loads(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_ls-django":
        ls_django_task(sys.argv[2], json.loads(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=("ours", "labelstudio"), default="ours")
    p.add_argument("--modes", default="capacity,realistic")
    p.add_argument("--capacity-levels", default="1,10,50")
    p.add_argument("--capacity-seconds", type=float, default=20)
    p.add_argument("--realistic-levels", default="50,200")
    p.add_argument("--realistic-seconds", type=float, default=45)
    p.add_argument("--think-min", type=float, default=1.5)
    p.add_argument("--think-max", type=float, default=2.5)
    p.add_argument("--comparisons", type=int, default=3000, help="pairs per project (one project per level)")
    p.add_argument("--overlap", type=int, default=3, help="judgments per pair (k; LS maximum_annotations)")
    p.add_argument("--idle-pct", type=float, default=10, help="wait before each level until the machine is this idle")
    p.add_argument("--idle-wait", type=float, default=300, help="... for at most this many seconds")
    p.add_argument("--retries", type=int, default=2, help="re-runs of a level that shared the CPU with other work")
    p.add_argument("--max-other", type=float, default=0.15, help="... more than this many cores")
    p.add_argument("--json-out", help="write the results here (for --report)")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the side-by-side table of earlier runs")
    ours = p.add_argument_group("ours")
    ours.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    ours.add_argument("--db-name", default="prefdata_annbench", help="PostgreSQL database, dropped and re-created")
    ours.add_argument("--port", type=int, default=8765)
    ours.add_argument("--workers", type=int, default=0, help="gunicorn workers (default 2*cores+1)")
    ours.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    ours.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    ours.add_argument("--profile", action="store_true", help="one sync worker under cProfile + SQL timing")
    ours.add_argument(
        "--py-spy", default="", metavar="PATH", help="py-spy binary: sample the server's processes during each level"
    )
    ours.add_argument("--py-spy-rate", type=int, default=50, help="samples per second (py-spy costs CPU too)")
    ours.add_argument("--profile-top", type=int, default=25)
    ours.add_argument(
        "--no-analyze",
        action="store_true",
        help="no ANALYZE after seeding and before each level (autovacuum is off on this "
        "PostgreSQL): planner statistics as left by the bulk import",
    )
    ours.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the pool scans after the run")
    ours.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, profiles)")
    ls = p.add_argument_group("Label Studio")
    ls.add_argument("--ls-url", default="http://127.0.0.1:8080")
    ls.add_argument("--ls-token", default="", help="the admin's token (default: a random one)")
    ls.add_argument("--ls-venv", default="/tmp/ls-venv", help="Label Studio's own virtualenv")
    ls.add_argument("--ls-db", choices=("sqlite", "postgres"), default="sqlite")
    ls.add_argument("--ls-db-name", default="ls_annbench", help="PostgreSQL database, dropped and re-created")
    ls.add_argument("--ls-grace", type=float, default=60, help="seconds to let requests in flight finish")
    args = p.parse_args()
    if args.report:
        report(args.report)
        return
    modes = args.modes.split(",")
    levels: list[tuple[str, int, float]] = []
    if "capacity" in modes:
        levels += [("capacity", n, args.capacity_seconds) for n in parse_levels(args.capacity_levels)]
    if "realistic" in modes:
        levels += [("realistic", n, args.realistic_seconds) for n in parse_levels(args.realistic_levels)]
    print(
        f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; target {args.target}; "
        f"code {code_version()}",
        flush=True,
    )
    started = time.perf_counter()
    results = run_ours(args, levels) if args.target == "ours" else run_labelstudio(args, levels)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["code"] = code_version()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    print(f"done in {results['total_seconds']}s")


if __name__ == "__main__":
    main()
