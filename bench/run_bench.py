"""`python3 dev.py run`: the size of its environment, and how long until the first 200.

Everything is measured on a fresh ``git clone`` of this checkout in a temporary folder
(committed files only; ``--overlay`` copies named files of the checkout over the clone,
for changes not committed yet), with the embedded defaults (SQLite, no DATABASE_URL or
REDIS_URL) and the package cache as it is (warm once anything was installed):

- fresh clone: ``python3 dev.py run`` in the new clone (creates ./.venv, installs, migrates,
  seeds, serves) until ``GET /login/`` answers 200;
- cold start: the environment is there, the database (./var) is deleted; ``dev.py run``
  again until the first 200;
- warm start: environment and database there (a restart);
- the size of ./.venv (du), and of ./.venv-test after ``python3 dev.py test --version``
  (installs the test environment), then one more ``run`` to check that alternating the
  two commands reinstalls nothing.

Each start's phases come from dev.py's own ``==>`` lines: install (until "migrating"),
set-up (migrate + seed, until "serving"), serve (runserver start-up and the first page).

    python3 bench/run_bench.py --cold 5 --json-out /tmp/run-bench.json
    python3 bench/run_bench.py --overlay dev.py demo/seed.py demo/management/commands/demo_setup.py

Baselines named by the issue: Label Studio's environment is 996 MB; `run`'s was 885 MB
(it installed the test extras), of which the plain install is 406 MB. Goals: under
450 MB, cold start under 5 s, fresh clone to the first 200 under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL_STUDIO_MB = 996.0
BEFORE_MB = 885.0
GOAL_MB = 450.0
GOAL_COLD_S = 5.0
GOAL_FRESH_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du_mb(path: Path) -> float:
    """Disk use as `du -sk` counts it, in MiB (what `du -sm` / `du -sh` print as MB / M)."""
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "DEBUG"}}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_to_200(clone: Path, log: Path, timeout: float) -> dict:
    """`python3 dev.py run` in the clone until GET /login/ answers 200; then stop it."""
    port = free_port()
    env = {**child_env(), "PORT": str(port)}
    url = f"http://127.0.0.1:{port}/login/"
    marks: dict[str, float] = {}
    # Flush what the previous step wrote (a fresh .venv is ~400 MB): each start is timed
    # on its own, not behind the kernel's write-back of the one before.
    if hasattr(os, "sync"):
        os.sync()
    t0 = time.perf_counter()
    # Its own process group: runserver's autoreloader runs the server in a child.
    proc = subprocess.Popen(
        [sys.executable, "dev.py", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "==> " in line:
                for key in ("creating", "installing", "migrating", "serving", "moving", "removing"):
                    if f"==> {key}" in line:
                        marks.setdefault(key, time.perf_counter() - t0)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = None
            if status == 200:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(5)
        log.write_text("".join(lines))
    if status != 200:
        raise SystemExit(f"no 200 from {url} within {timeout:.0f} s (rc {proc.returncode}); see {log}")
    install_end = marks.get("migrating", 0.0)
    setup_end = marks.get("serving", install_end)
    return {
        "seconds": round(elapsed, 3),
        "installed": "installing" in marks,
        "install_s": round(install_end, 3),
        "setup_s": round(setup_end - install_end, 3),
        "serve_s": round(elapsed - setup_end, 3),
    }


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def clone_checkout(where: Path, overlay: list[str]) -> str:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    for name in overlay:
        source, target = ROOT / name, where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, check=True
    ).stdout.strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", type=int, default=2, help="fresh clones to time (each installs .venv anew)")
    parser.add_argument("--cold", type=int, default=3, help="cold starts (database deleted) per clone")
    parser.add_argument("--warm", type=int, default=2, help="warm starts (database kept) in the first clone")
    parser.add_argument("--overlay", nargs="*", default=[], help="checkout files to copy over the clone")
    parser.add_argument("--no-test-env", action="store_true", help="skip the .venv-test size and alternation")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a first 200")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clones")
    parser.add_argument("--json-out", help="write the results here as JSON")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="run-bench-"))
    results: dict = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "python": platform.python_version(),
        "overlay": args.overlay,
        "fresh": [],
        "cold": [],
        "warm": [],
    }
    try:
        for index in range(max(1, args.fresh)):
            clone = base / f"clone-{index}"
            results["commit"] = clone_checkout(clone, args.overlay)
            fresh = start_to_200(clone, base / f"fresh-{index}.log", args.timeout)
            results["fresh"].append(fresh)
            print(f"fresh clone {index + 1}: {fresh['seconds']:.1f} s to the first 200 {fresh}", flush=True)
            if index == 0:
                results["run_env_mb"] = round(du_mb(clone / ".venv"), 1)
            for n in range(args.cold):
                shutil.rmtree(clone / "var", ignore_errors=True)
                cold = start_to_200(clone, base / f"cold-{index}-{n}.log", args.timeout)
                results["cold"].append(cold)
                print(f"  cold start {n + 1}: {cold['seconds']:.2f} s {cold}", flush=True)
            if index == 0:
                for n in range(args.warm):
                    warm = start_to_200(clone, base / f"warm-{n}.log", args.timeout)
                    results["warm"].append(warm)
                    print(f"  warm start {n + 1}: {warm['seconds']:.2f} s {warm}", flush=True)
        first = base / "clone-0"
        results["run_env_after_mb"] = round(du_mb(first / ".venv"), 1)
        if not args.no_test_env:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "dev.py", "test", "--version"],
                cwd=first,
                env=child_env(),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            results["test_install_s"] = round(time.perf_counter() - t0, 1)
            # Before each command had its own environment, `test` installed into .venv too.
            test_env = first / ".venv-test" if (first / ".venv-test").exists() else first / ".venv"
            results["test_env"] = test_env.name
            results["test_env_mb"] = round(du_mb(test_env), 1)
            again = start_to_200(first, base / "after-test.log", args.timeout)
            results["run_after_test"] = again
            print(f"run after test: {again}", flush=True)
    finally:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
        if args.keep:
            print(f"clones kept under {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    report(results)


def report(r: dict) -> None:
    fresh = summary([x["seconds"] for x in r["fresh"]])
    cold = summary([x["seconds"] for x in r["cold"]])
    size = r["run_env_after_mb"]
    print()
    print(f"{r['date']}, commit {r['commit']}" + (f" + {' '.join(r['overlay'])}" if r["overlay"] else ""))
    print(f"{r['machine']}, Python {r['python']}")
    print()
    rows = [
        ("", "measured", "goal", "vs Label Studio", "vs before"),
        (
            "run env (.venv), MB",
            f"{size:.0f}",
            f"< {GOAL_MB:.0f}",
            f"{size / LABEL_STUDIO_MB:.2f}x of {LABEL_STUDIO_MB:.0f}",
            f"{size / BEFORE_MB:.2f}x of {BEFORE_MB:.0f}",
        ),
        (
            f"cold start, s (n={len(r['cold'])})",
            f"{cold['median']:.2f} ({cold['min']:.2f}-{cold['max']:.2f})",
            f"< {GOAL_COLD_S:.0f}",
            "",
            "",
        ),
        (
            f"fresh clone to 200, s (n={len(r['fresh'])})",
            f"{fresh['median']:.1f} ({fresh['min']:.1f}-{fresh['max']:.1f})",
            f"< {GOAL_FRESH_S:.0f}",
            "",
            "",
        ),
    ]
    if r["warm"]:
        warm = summary([x["seconds"] for x in r["warm"]])
        rows.append(
            (
                f"warm start, s (n={len(r['warm'])})",
                f"{warm['median']:.2f} ({warm['min']:.2f}-{warm['max']:.2f})",
                "",
                "",
                "",
            )
        )
    if "test_env_mb" in r:
        rows.append((f"test env ({r['test_env']}), MB", f"{r['test_env_mb']:.0f}", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for label, key in (("fresh clone", "fresh"), ("cold start", "cold")):
        phases = {p: statistics.median(x[p] for x in r[key]) for p in ("install_s", "setup_s", "serve_s")}
        print(
            f"{label} phases (median): install {phases['install_s']:.2f} s, "
            f"migrate + seed {phases['setup_s']:.2f} s, runserver to 200 {phases['serve_s']:.2f} s"
        )
    if "run_after_test" in r:
        after = r["run_after_test"]
        print(
            f"test env installed in {r['test_install_s']:.0f} s; `run` right after `test`: {after['seconds']:.2f} s, "
            + ("REINSTALLED" if after["installed"] else "no reinstall")
        )


if __name__ == "__main__":
    main()
