"""Import throughput and memory: prompts, samples and ready-made pairs.

Generates files of the given sizes, imports each through ``manage.py import_data``
in its own process (as a user would), and prints rows/s and that process's peak
RSS. Run against PostgreSQL for the numbers in docs/BENCHMARKS.md:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prefdata_bench \
        .venv/bin/python bench/import_bench.py --prompts 100000 --samples 200000 --pairs 100000

Baseline named by the issue: Label Studio 1.23 imports about 5,000 pair tasks/s
through its API on this 2-core machine (SQLite); the goal is five times that.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL_STUDIO_PAIRS_PER_S = 5000.0
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


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_files(tmp: Path, n_prompts: int, n_samples: int, n_pairs: int) -> dict[str, Path]:
    rng = random.Random(7)
    paths = {"prompts": tmp / "prompts.jsonl", "samples": tmp / "samples.jsonl", "pairs": tmp / "pairs.jsonl"}
    with paths["prompts"].open("w") as f:
        for i in range(n_prompts):
            f.write(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "prompt": f"Question {i}: {sentence(rng, 25)}",
                        "tags": [rng.choice(["code", "reasoning", "safety", "helpfulness"])],
                    }
                )
                + "\n"
            )
    per_prompt = max(1, n_samples // max(1, n_prompts))
    with paths["samples"].open("w") as f:
        written = 0
        while written < n_samples:
            i = written // per_prompt
            model = f"bench-v{written % per_prompt + 1}"
            f.write(
                json.dumps(
                    {
                        "prompt_external_id": f"p{i % n_prompts}",
                        "model": model,
                        "text": sentence(rng, 80),
                        "seed": 0,
                        "sampling_params": {"temperature": 0.7, "top_p": 0.9},
                    }
                )
                + "\n"
            )
            written += 1
    with paths["pairs"].open("w") as f:
        for i in range(n_pairs):
            f.write(
                json.dumps(
                    {
                        "input": f"Pair question {i}: {sentence(rng, 25)}",
                        "output_1": sentence(rng, 80),
                        "output_2": sentence(rng, 80),
                        "label": rng.choice([1, 2]),
                    }
                )
                + "\n"
            )
    return paths


def run_import(kind: str, path: Path, project: str, env: dict[str, str]) -> tuple[float, float, dict]:
    cmd = [sys.executable, "manage.py", "import_data", kind, str(path), "--project", project, "--json"]
    if kind == "pairs":
        cmd += ["--source", "bench"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    # ru_maxrss of children is the maximum over all waited-for children; each import is
    # the largest process we start, so read it per child through wait4 instead.
    peak_mb = _peak_rss_mb(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} import failed:\n{err.decode()[-2000:]}")
    return seconds, peak_mb, json.loads(out)


def _peak_rss_mb(proc: subprocess.Popen) -> float:
    return getattr(proc, "_peak_mb", 0.0)


class _Popen(subprocess.Popen):
    """Popen that records the child's own peak RSS (wait4) when it is reaped."""

    def _try_wait(self, wait_flags):  # type: ignore[override]
        try:
            pid, status, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            pid, status = self.pid, 0
        else:
            if pid:
                self._peak_mb = usage.ru_maxrss / 1024
        return pid, status


subprocess.Popen = _Popen  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=100_000)
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    db = env.get("DATABASE_URL", "sqlite (embedded default)")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    slug = f"bench-{int(time.time())}"
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            f"from annotation.services import project_create; project_create(name={slug!r})",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.prompts, args.samples, args.pairs)
        rows = []
        for kind, count in (("prompts", args.prompts), ("samples", args.samples), ("pairs", args.pairs)):
            if not count:
                continue
            seconds, peak, report = run_import(kind, paths[kind], slug, env)
            created = sum(report["created"].values())
            rows.append((kind, count, seconds, count / seconds, peak, created))
    print(f"database: {db.split('@')[-1]}")
    print(f"{'kind':<8} {'records':>9} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>12} {'rows written':>13}")
    for kind, count, seconds, rate, peak, created in rows:
        print(f"{kind:<8} {count:>9} {seconds:>8.2f} {rate:>10.0f} {peak:>12.0f} {created:>13}")
    for kind, _count, _s, rate, _p, _c in rows:
        if kind == "pairs":
            print(
                f"pairs/s vs Label Studio 1.23 API import ({LABEL_STUDIO_PAIRS_PER_S:.0f}/s): "
                f"{rate / LABEL_STUDIO_PAIRS_PER_S:.1f}x"
            )


if __name__ == "__main__":
    main()
