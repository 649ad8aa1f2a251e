#!/usr/bin/env python3
"""The two set-up commands, for a fresh machine with only Python (3.11-3.13):

    python3 dev.py run     # install, migrate, seed the demo project, serve it at http://127.0.0.1:8000
    python3 dev.py test    # install (with the training stack) and run the whole test suite

Both create ./.venv on first use and install the pinned versions from
constraints.txt; later runs reinstall only when pyproject.toml or constraints.txt
change. Without DATABASE_URL / REDIS_URL everything is embedded (SQLite, tasks
in-process); with them the same commands use PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
CHROMIUM = Path("/usr/bin/chromium")


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def ensure_venv(extras: str) -> None:
    if not (3, 11) <= sys.version_info[:2] < (3, 14):
        sys.exit(f"Python 3.11, 3.12 or 3.13 is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        say(f"creating {VENV.relative_to(ROOT)}")
        venv.create(VENV, with_pip=True)
    stamp = VENV / f".installed-{extras}"
    digest = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "constraints.txt")) + extras.encode()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"installing prefdata[{extras}] with the pinned versions (constraints.txt)")
    sh(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    if "train" in extras:
        # torch first and pinned: the CPU build. Left to the resolver, a newer torch with
        # CUDA wheels (gigabytes) would be chosen.
        sh(PYTHON, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "torch==2.13.0")
    sh(PYTHON, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", f".[{extras}]")
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.write_text(digest)


def run(argv: list[str]) -> None:
    ensure_venv("test")
    env = {**os.environ}
    env.setdefault("DEBUG", "1")
    port = argv[0] if argv else env.get("PORT", "8000")
    say("migrating the database" + (" (SQLite under ./var)" if "DATABASE_URL" not in env else ""))
    sh(PYTHON, "manage.py", "migrate", "--noinput", "-v0", env=env)
    say("seeding the demo project")
    sh(PYTHON, "manage.py", "seed_demo", env=env)
    # A judged pilot round and part of the open one, so the lead dashboard has numbers.
    sh(PYTHON, "manage.py", "seed_demo_history", env=env)
    say(f"serving on http://127.0.0.1:{port}/  (Ctrl-C stops it)")
    os.execve(str(PYTHON), [str(PYTHON), "manage.py", "runserver", f"127.0.0.1:{port}"], env)


def test(argv: list[str]) -> None:
    ensure_venv("test,train")
    env = {**os.environ}
    db = env.get("DATABASE_URL", "")
    if db.startswith("postgres"):
        say(f"database: PostgreSQL ({db.rsplit('@', 1)[-1]})")
    else:
        say("database: SQLite. Tests marked 'postgres' are skipped; set DATABASE_URL=postgres://... to run them")
    if not CHROMIUM.exists() and not env.get("CHROMIUM_PATH"):
        say("no Chromium at /usr/bin/chromium: browser tests are skipped (apt-get install chromium)")
    os.execve(str(PYTHON), [str(PYTHON), "-m", "pytest", *argv], env)


def main() -> None:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    os.chdir(ROOT)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
