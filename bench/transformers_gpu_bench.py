"""Tokens/s of the ``transformers`` adapter (models_service/backends/transformers.py) on
whatever device is there: a GPU machine for the numbers in docs/BENCHMARKS.md.

Builds a randomly initialised Llama locally (nothing is downloaded): TinyLlama's 1.1B
shape in bfloat16 by default, with the byte-level tokenizer of the tests. Random
weights measure the machinery (batching, padding, generate), not answer quality; the
answers run to ``--max-tokens`` almost always, since end-of-text is one id in 32,000.

    python bench/transformers_gpu_bench.py --prompts 512 --batch-size 64 --max-tokens 128
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.sampling_bench import prompts
from models_service.backends import (
    Generation,
    GenerationRequest,
    SamplingParams,
    TransformersConfig,
)
from models_service.backends.transformers import TransformersBackend
from models_service.testing import build_tiny_chat_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="tinyllama-1.1b", choices=["tiny", "tinyllama-1.1b"])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch
    import transformers

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"device: {device} ({gpu}); torch {torch.__version__}, transformers {transformers.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model_dir = build_tiny_chat_model(Path(tmp) / "model", shape=args.shape)
        print(f"built a random {args.shape} in {time.perf_counter() - started:.1f} s")
        conversations = prompts(args.prompts)
        header = f"{'batch':>6} {'answers':>8} {'wall s':>8} {'answers/s':>10} {'tokens/s':>10} {'tok/answer':>10}"
        rows = []
        for batch_size in args.batch_size:
            backend = TransformersBackend(
                TransformersConfig(
                    model_dir=str(model_dir),
                    device=device,
                    dtype="bfloat16" if device.startswith("cuda") else "float32",
                    batch_size=batch_size,
                )
            )
            params = SamplingParams(max_tokens=args.max_tokens, temperature=1.0, seed=0)
            backend.generate(
                [GenerationRequest(messages=m, params=params) for m in conversations[:batch_size]]
            )  # warm-up
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            results = backend.generate([GenerationRequest(messages=m, params=params) for m in conversations])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            wall = time.perf_counter() - started
            good = [r for r in results if isinstance(r, Generation)]
            tokens = sum(r.completion_tokens or 0 for r in good)
            errors = [r for r in results if not isinstance(r, Generation)]
            if errors:
                print("first error:", errors[0])
            rows.append((batch_size, len(good), wall, len(good) / wall, tokens / wall, tokens / max(1, len(good))))
            backend.close()
        print(header)
        print("-" * len(header))
        for batch_size, answers, wall, aps, tps, per in rows:
            print(f"{batch_size:>6} {answers:>8} {wall:>8.2f} {aps:>10.1f} {tps:>10.1f} {per:>10.1f}")


if __name__ == "__main__":
    main()
