"""Sampling throughput through the ``openai`` adapter: N prompts answered by a real
OpenAI-compatible server one at a time, then with concurrency, and the ratio.

The server is ``transformers serve`` on 127.0.0.1 serving a tiny randomly initialised
Llama built locally (models_service.testing; nothing is downloaded), unless
``--base-url`` points at a running server (``vllm serve`` on a GPU machine). The
adapter is the one sampling jobs use (models_service/backends/openai_compat.py):
threads under the per-version concurrency limit, retries, ``max_tokens`` always sent.

    flock /tmp/bench.lock .venv-test/bin/python bench/sampling_bench.py --prompts 1000 --concurrency 16

Prints one row per mode (wall time, answers/s, completion tokens/s, latency
percentiles, errors) and the speed-up of concurrency over one at a time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from models_service.backends import (
    Generation,
    GenerationRequest,
    OpenAIConfig,
    SamplingParams,
)
from models_service.backends.openai_compat import OpenAICompatBackend
from models_service.outbound import HostPolicy

WORDS = [
    "model",
    "answer",
    "prompt",
    "reward",
    "policy",
    "token",
    "sample",
    "human",
    "preference",
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
    "sea",
    "sky",
    "poem",
]


def prompts(n: int, seed: int = 7) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [
        [
            {
                "role": "user",
                "content": f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))),
            }
        ]
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run(base_url: str, model: str, conversations: list, concurrency: int, max_tokens: int) -> dict:
    backend = OpenAICompatBackend(
        OpenAIConfig(base_url=base_url, model=model, max_concurrency=concurrency, timeout_s=120, max_retries=3),
        key=f"bench-{concurrency}",
        # The bench runs outside Django: the outbound policy is given here, the one host it uses.
        policy=HostPolicy.parse([urlsplit(base_url).hostname or "127.0.0.1"]),
    )
    requests = [
        GenerationRequest(messages=m, params=SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=i))
        for i, m in enumerate(conversations)
    ]
    backend.model_name()  # the /models look-up is not part of the timing
    started = time.perf_counter()
    results = backend.generate(requests)
    wall = time.perf_counter() - started
    backend.close()
    good = [r for r in results if isinstance(r, Generation)]
    latencies = [r.latency_ms for r in good if r.latency_ms is not None]
    tokens = sum(r.completion_tokens or 0 for r in good)
    return {
        "concurrency": concurrency,
        "answers": len(good),
        "errors": len(results) - len(good),
        "wall_s": wall,
        "answers_per_s": len(good) / wall if wall else 0.0,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "mean_tokens": statistics.mean([r.completion_tokens or 0 for r in good]) if good else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--base-url", default="", help="A running OpenAI-compatible server (default: start one)")
    parser.add_argument("--model", default="", help="Model name to request (default: the server's first)")
    parser.add_argument("--model-dir", default="", help="Serve this local model directory instead of a tiny one")
    parser.add_argument(
        "--serve-args", default="", help="Extra arguments for transformers serve, e.g. --continuous-batching"
    )
    args = parser.parse_args()

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        base_url = args.base_url
        description = base_url
        if not base_url:
            from models_service.testing import TransformersServer, build_tiny_chat_model

            model_dir = args.model_dir or str(build_tiny_chat_model(Path(tmp) / "tiny"))
            server = TransformersServer(model_dir, log_path=Path(tmp) / "serve.log", extra_args=args.serve_args.split())
            server.start()
            base_url = server.base_url
            description = f"transformers serve {' '.join(server.extra_args)} ({'tiny random Llama' if not args.model_dir else model_dir}), CPU"
        try:
            conversations = prompts(args.prompts)
            # Warm-up: first requests pay for lazy initialisation in the server.
            run(base_url, args.model, conversations[:8], 4, args.max_tokens)
            rows = [
                run(base_url, args.model, conversations, 1, args.max_tokens),
                run(base_url, args.model, conversations, args.concurrency, args.max_tokens),
            ]
        finally:
            if server is not None:
                server.stop()

    print(f"server: {description}")
    print(f"prompts: {args.prompts}, max_tokens: {args.max_tokens}, cores: {os.cpu_count()}")
    header = f"{'concurrency':>11} {'answers':>8} {'errors':>6} {'wall s':>8} {'answers/s':>10} {'tokens/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'tok/answer':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['concurrency']:>11} {row['answers']:>8} {row['errors']:>6} {row['wall_s']:>8.2f} "
            f"{row['answers_per_s']:>10.1f} {row['tokens_per_s']:>9.1f} {row['p50_ms']:>8.0f} {row['p95_ms']:>8.0f} "
            f"{row['mean_tokens']:>10.1f}"
        )
    ratio = rows[1]["answers_per_s"] / rows[0]["answers_per_s"] if rows[0]["answers_per_s"] else float("nan")
    print(f"\nconcurrency {args.concurrency} vs one at a time: {ratio:.2f}x answers/s")


if __name__ == "__main__":
    main()
