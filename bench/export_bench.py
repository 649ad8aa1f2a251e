"""Export throughput and memory: one million judgments to DPO Parquet and JSONL.

Fills a fresh PostgreSQL database with judged comparisons through COPY (annotation/bulk.py),
then runs each export in its own process exactly as the Celery task does
(``services.export_job_run``) and prints judgments read per second, rows written and
that process's peak RSS. Every export runs twice to check the files are byte-identical.

    flock /tmp/bench.lock env DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefdata_export_bench \\
        .venv/bin/python bench/export_bench.py --judgments 1000000

The database named in DATABASE_URL is dropped and created again (it must not be the
development database: the name has to contain "bench"). Goal (issue #6): under 60 s
and under 500 MB peak for one million judgments. Label Studio 1.23 on this machine
exports 4,400 annotations as JSON in 5.9 s (about 750 per second, synchronously, 537 MB
server RSS); with ``--labelstudio`` the script measures it side by side when a Label
Studio venv exists at /tmp/ls-venv (bench/annotate_bench.py shows how to make one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABEL_STUDIO = {"annotations": 4400, "seconds": 5.9, "per_s": 750.0, "rss_mb": 537.0}
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

EXPORTS = {
    # name: (kind, file_format, text_format, filters, options)
    "dpo-parquet": (
        "dpo",
        "parquet",
        "standard",
        {"aggregation": "none", "deduplicate": False, "test_fraction": 0.05},
        {},
    ),
    "dpo-jsonl": ("dpo", "jsonl", "standard", {"aggregation": "none", "deduplicate": False, "test_fraction": 0.05}, {}),
    "dpo-parquet-majority": ("dpo", "parquet", "conversational", {"test_fraction": 0.05}, {}),
    "raw-jsonl": ("raw", "jsonl", "conversational", {"drop_cant_judge": False, "test_fraction": 0}, {}),
}


def _django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


# --- Children -----------------------------------------------------------------------------


def fill(judgments: int, annotators: int, edit_share: float) -> dict:
    """Runs in a child: projects, prompts, samples, comparisons, judgments (and some edits) by COPY."""
    import hashlib
    import random

    import orjson
    from django.db import transaction
    from django.utils import timezone

    from accounts.roles import Role
    from accounts.services import user_create
    from annotation.bulk import (
        allocate_ids,
        analyze,
        constraints_immediate,
        insert_rows,
    )
    from annotation.models import (
        Comparison,
        Edit,
        Judgment,
        Prompt,
        RoundStatus,
        Sample,
    )
    from annotation.services import project_create
    from models_service.rounds import round_create
    from models_service.services import model_version_get_or_create

    rng = random.Random(7)
    pool = [" ".join(rng.choice(WORDS) for _ in range(20)).capitalize() + "." for _ in range(997)]
    now = timezone.now()
    comparisons = judgments // 2
    started = time.perf_counter()
    with transaction.atomic():
        constraints_immediate()
        project = project_create(name=f"Export bench {int(time.time())}", overlap=2)
        v1, v2 = model_version_get_or_create(name="bench-v1"), model_version_get_or_create(name="bench-v2")
        round_ = round_create(project=project, baseline=v1, candidate=v2, status=RoundStatus.OPEN)
        raters = [
            user_create(username=f"bench-rater-{i}-{project.pk}", password=None, roles=[Role.ANNOTATOR])
            for i in range(annotators)
        ]
        chunk = 50_000
        for start in range(0, comparisons, chunk):
            n = min(chunk, comparisons - start)
            prompt_ids = allocate_ids(Prompt, n)
            sample_ids = allocate_ids(Sample, 2 * n)
            comparison_ids = allocate_ids(Comparison, n)
            judgment_ids = allocate_ids(Judgment, 2 * n)
            prompts, samples, comps, judged, edits = [], [], [], [], []
            for k in range(n):
                i = start + k
                messages = [{"role": "user", "content": f"Question {i}: {pool[i % 997]} {pool[(i * 7) % 997]}"}]
                content_hash = hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()
                prompts.append((prompt_ids[k], project.pk, messages, [WORDS[i % 7]], "bench", "", content_hash, 1, now))
                for side, version in ((0, v1), (1, v2)):
                    text = f"Answer {i}{'ab'[side]}: " + " ".join(pool[(i * (3 + side) + j) % 997] for j in range(4))
                    samples.append(
                        (
                            sample_ids[2 * k + side],
                            prompt_ids[k],
                            version.pk,
                            text,
                            hashlib.sha256(text.encode()).hexdigest(),
                            {},
                            None,
                            "",
                            False,
                            False,
                            now,
                        )
                    )
                comps.append(
                    (
                        comparison_ids[k],
                        round_.pk,
                        prompt_ids[k],
                        sample_ids[2 * k],
                        sample_ids[2 * k + 1],
                        2,
                        2,
                        2,
                        False,
                        "",
                        now,
                    )
                )
                first = rng.randrange(annotators)
                for vote in range(2):
                    rater = raters[(first + vote) % annotators]
                    roll = rng.random()
                    preferred = (
                        "A"
                        if roll < 0.42
                        else "B"
                        if roll < 0.84
                        else "tie"
                        if roll < 0.92
                        else ("both_bad" if roll < 0.96 else "cant_judge")
                    )
                    strength = (
                        rng.choice(("significantly", "better", "slightly", "negligibly")) if preferred in "AB" else ""
                    )
                    jid = judgment_ids[2 * k + vote]
                    judged.append((jid, comparison_ids[k], rater.pk, preferred, strength, "", "", "", "import", now))
                    if preferred in ("A", "B", "both_bad") and rng.random() < edit_share:
                        base = sample_ids[2 * k + (1 if preferred == "B" else 0)]
                        edits.append((jid, base, f"Edited answer {i}: {pool[(i * 11) % 997]}", now))
            insert_rows(
                Prompt,
                [
                    "id",
                    "project_id",
                    "messages",
                    "tags",
                    "source",
                    "external_id",
                    "content_hash",
                    "turns",
                    "created_at",
                ],
                prompts,
            )
            insert_rows(
                Sample,
                [
                    "id",
                    "prompt_id",
                    "model_version_id",
                    "text",
                    "text_hash",
                    "sampling_params",
                    "seed",
                    "finish_reason",
                    "identity_flagged",
                    "identity_released",
                    "created_at",
                ],
                samples,
            )
            insert_rows(
                Comparison,
                [
                    "id",
                    "round_id",
                    "prompt_id",
                    "sample_a_id",
                    "sample_b_id",
                    "required_judgments",
                    "judgment_count",
                    "taken",
                    "is_gold",
                    "gold_preferred",
                    "created_at",
                ],
                comps,
            )
            insert_rows(
                Judgment,
                [
                    "id",
                    "comparison_id",
                    "annotator_id",
                    "preferred",
                    "strength",
                    "safety",
                    "left",
                    "rationale",
                    "source",
                    "created_at",
                ],
                judged,
            )
            if edits:
                edit_ids = allocate_ids(Edit, len(edits))
                insert_rows(
                    Edit,
                    ["id", "judgment_id", "base_sample_id", "text", "created_at"],
                    [(eid, *row) for eid, row in zip(edit_ids, edits)],
                )
    analyze([Prompt, Sample, Comparison, Judgment, Edit])
    return {"project": project.pk, "judgments": 2 * comparisons, "seconds": time.perf_counter() - started}


def export(project_id: int, name: str) -> dict:
    """Runs in a child: one export job, as the Celery task runs it."""
    from django.conf import settings

    from rlhf_export.models import ExportJob
    from rlhf_export.schemas import ExportFilters, ExportOptions
    from rlhf_export.services import RunOutcome, export_job_run

    kind, file_format, text_format, filters, options = EXPORTS[name]
    job = ExportJob.objects.create(
        project_id=project_id,
        kind=kind,
        file_format=file_format,
        text_format=text_format,
        filters=ExportFilters.model_validate(filters).model_dump(mode="json"),
        options=ExportOptions.model_validate(options).model_dump(mode="json"),
    )
    job.storage_prefix = f"exports/job-{job.pk}"
    job.save(update_fields=["storage_prefix"])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    outcome = export_job_run(job_id=job.pk)
    seconds = time.perf_counter() - started
    job.refresh_from_db()
    if outcome != RunOutcome.SUCCEEDED:
        raise SystemExit(f"export {name} {outcome}: {job.error}")
    files = list(job.artifacts.filter(role="data").values_list("name", "size", "sha256"))
    return {
        "name": name,
        "job": job.pk,
        "seconds": seconds,
        "judgments": job.judgments_total,
        "rows": job.rows_total,
        "bytes": sum(size for _, size, _ in files),
        "files": len(files),
        "checksums": [sha for _, _, sha in files],
        "rss_before_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "media": str(Path(settings.MEDIA_ROOT) / job.storage_prefix),
        "batch": settings.EXPORT_BATCH_SIZE,
    }


# --- Label Studio, side by side -------------------------------------------------------------

LS_LABEL_CONFIG = (
    '<View><Text name="prompt" value="$prompt"/><Text name="a" value="$a"/><Text name="b" value="$b"/>'
    '<Choices name="choice" toName="prompt"><Choice value="A"/><Choice value="B"/></Choices></View>'
)


def _ls_request(port: int, token: str, method: str, path: str, payload=None, timeout: float = 600):
    import urllib.request

    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def run_labelstudio(annotations: int, venv: Path, port: int) -> dict:
    """Label Studio 1.23 (SQLite, its default) exports ``annotations`` pairwise choices as JSON,
    through its synchronous export endpoint; server RSS is sampled during the export."""
    import random
    import secrets
    import signal
    import threading
    import urllib.error

    rng = random.Random(11)
    data_dir = Path(tempfile.mkdtemp(prefix="export-bench-ls-"))
    token, password = secrets.token_hex(20), secrets.token_urlsafe(12)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABEL_STUDIO_", "DJANGO_", "POSTGRE_")) and k not in ("DATABASE_URL", "MEDIA_ROOT")
    }
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        DJANGO_DB="sqlite",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
    )
    cmd = [
        str(venv / "bin" / "label-studio"),
        "start",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--username",
        "admin@exportbench.local",
        "--password",
        password,
        "--user-token",
        token,
        "--enable-legacy-api-token",
        "--data-dir",
        str(data_dir),
    ]
    log = open(data_dir / "label-studio.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=data_dir)
    try:
        deadline = time.time() + 600
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"Label Studio exited with {proc.returncode}; see {data_dir}/label-studio.log")
            try:
                _ls_request(port, token, "GET", "/health", timeout=5)
                break
            except (OSError, urllib.error.URLError):
                if time.time() > deadline:
                    raise SystemExit("Label Studio did not start in 600 s") from None
                time.sleep(1)
        _, body = _ls_request(
            port, token, "POST", "/api/projects/", {"title": "export-bench", "label_config": LS_LABEL_CONFIG}
        )
        project = json.loads(body)["id"]

        def sentence(n: int) -> str:
            return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

        tasks = [
            {
                "data": {"prompt": f"Question {i}: {sentence(25)}", "a": sentence(80), "b": sentence(80)},
                "annotations": [
                    {
                        "result": [
                            {
                                "from_name": "choice",
                                "to_name": "prompt",
                                "type": "choices",
                                "value": {"choices": [rng.choice("AB")]},
                            }
                        ]
                    }
                ],
            }
            for i in range(annotations)
        ]
        for start in range(0, len(tasks), 1000):
            _ls_request(port, token, "POST", f"/api/projects/{project}/import", tasks[start : start + 1000])
        peak = {"mb": _tree_rss_mb(proc.pid)}
        idle_mb = peak["mb"]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak["mb"] = max(peak["mb"], _tree_rss_mb(proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        _, body = _ls_request(port, token, "GET", f"/api/projects/{project}/export?exportType=JSON")
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        exported = json.loads(body)
        count = sum(len(task.get("annotations", [])) for task in exported)
        return {
            "annotations": count,
            "seconds": seconds,
            "per_s": count / seconds,
            "peak_rss_mb": peak["mb"],
            "idle_rss_mb": idle_mb,
            "bytes": len(body),
        }
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- Parent -------------------------------------------------------------------------------------


def child(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pg_recreate(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: the benchmark database's name must contain 'bench'")
    base = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    env = {**os.environ, **({"PGPASSWORD": parsed.password} if parsed.password else {})}
    subprocess.run(["dropdb", *base, "--if-exists", "--force", name], check=True, env=env)
    subprocess.run(["createdb", *base, name], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--edits", type=float, default=0.05, help="share of judgments with a rewrite")
    parser.add_argument("--exports", default="dpo-parquet,dpo-jsonl,dpo-parquet-majority,raw-jsonl")
    parser.add_argument("--repeat", type=int, default=2, help="runs per export (checksums must match)")
    parser.add_argument("--keep-db", action="store_true", help="reuse the filled database (skip drop and fill)")
    parser.add_argument("--project", type=int, default=0, help="with --keep-db: the filled project's id")
    parser.add_argument(
        "--labelstudio",
        default="",
        metavar="VENV",
        help="also measure Label Studio's JSON export from this venv (e.g. /tmp/ls-venv)",
    )
    parser.add_argument("--ls-annotations", type=int, default=4400)
    parser.add_argument("--ls-port", type=int, default=8391)
    parser.add_argument("--fill", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.fill or args.export:
        _django({})
        result = fill(args.judgments, args.annotators, args.edits) if args.fill else export(args.project, args.export)
        print(json.dumps(result))
        return

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL=postgres://…/prefdata_export_bench (a database this script may drop)")
    with tempfile.TemporaryDirectory(prefix="export-bench-") as media:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
        env.update(DEBUG="1", MEDIA_ROOT=media, DJANGO_SETTINGS_MODULE="config.settings")
        project = args.project
        if not args.keep_db:
            pg_recreate(url)
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            filled = child(
                [
                    "--fill",
                    "--judgments",
                    str(args.judgments),
                    "--annotators",
                    str(args.annotators),
                    "--edits",
                    str(args.edits),
                ],
                env,
            )
            project = filled["project"]
            print(f"filled {filled['judgments']:,} judgments by COPY in {filled['seconds']:.1f} s")
        small = None
        if args.labelstudio:
            # The same number of judgments as Label Studio's annotations, exported by us too.
            small = child(
                ["--fill", "--judgments", str(args.ls_annotations), "--annotators", "2", "--edits", "0"], env
            )["project"]
        results = []
        for name in args.exports.split(","):
            runs = []
            for _ in range(max(1, args.repeat)):
                runs.append(child(["--export", name, "--project", str(project)], env))
                shutil.rmtree(runs[-1]["media"], ignore_errors=True)  # gigabytes at a million rows
            identical = all(r["checksums"] == runs[0]["checksums"] for r in runs)
            best = min(runs, key=lambda r: r["seconds"])
            results.append(
                {
                    **best,
                    "identical": identical,
                    "all_seconds": [r["seconds"] for r in runs],
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                }
            )
    print(f"database: {url.split('@')[-1]} · batch {results[0]['batch'] if results else '?'} judgments")
    print(
        f"{'export':<22} {'judgments':>10} {'rows':>9} {'seconds':>8} {'judgm./s':>9} {'MB out':>7} "
        f"{'files':>5} {'peak RSS MB':>11} {'RSS at start':>12} {'same bytes':>10}"
    )
    for r in results:
        print(
            f"{r['name']:<22} {r['judgments']:>10,} {r['rows']:>9,} {r['seconds']:>8.1f} "
            f"{r['judgments'] / r['seconds']:>9,.0f} {r['bytes'] / 1e6:>7.0f} {r['files']:>5} "
            f"{r['peak_rss_mb']:>11.0f} {r['rss_before_mb']:>12.0f} {'yes' if r['identical'] else 'NO':>10}"
        )
        print(f"  runs: {', '.join(f'{s:.1f} s' for s in r['all_seconds'])}")
    ls = LABEL_STUDIO
    if args.labelstudio:
        ours_small = child(["--export", "dpo-jsonl", "--project", str(small)], env)
        measured = run_labelstudio(args.ls_annotations, Path(args.labelstudio), args.ls_port)
        print(
            f"Label Studio 1.23 (SQLite) JSON export: {measured['annotations']:,} annotations in "
            f"{measured['seconds']:.2f} s = {measured['per_s']:,.0f}/s, server RSS {measured['idle_rss_mb']:.0f} MB "
            f"idle -> {measured['peak_rss_mb']:.0f} MB peak, {measured['bytes'] / 1e6:.1f} MB of JSON"
        )
        print(
            f"prefdata dpo-jsonl, same count: {ours_small['judgments']:,} judgments in {ours_small['seconds']:.2f} s = "
            f"{ours_small['judgments'] / ours_small['seconds']:,.0f}/s, peak RSS {ours_small['peak_rss_mb']:.0f} MB"
        )
        ls = {**ls, **{k: measured[k] for k in ("annotations", "seconds", "per_s")}, "rss_mb": measured["peak_rss_mb"]}
    for r in results:
        ratio = (r["judgments"] / r["seconds"]) / ls["per_s"]
        print(
            f"{r['name']}: {ratio:.0f}x Label Studio 1.23's {ls['per_s']:.0f} annotations/s "
            f"({ls['annotations']:,} in {ls['seconds']:.1f} s, {ls['rss_mb']:.0f} MB server RSS; "
            f"{'measured in this run' if args.labelstudio else 'orientation figure from the issue, not re-measured'})"
        )


if __name__ == "__main__":
    main()
