#!/usr/bin/env python3
"""The two set-up commands, for a fresh machine with only Python (3.11-3.13):

    python3 dev.py run     # install, migrate, seed the demo project, serve it at http://127.0.0.1:8000
    python3 dev.py test    # install (with the test and training stacks), check the code, run every test

`test` first checks the code (ruff, ruff format, import-linter's contracts, mypy; their
settings are in pyproject.toml), then runs the whole suite. With arguments it runs only
pytest with them: `python3 dev.py test tests/annotation -x`.

Each command has its own environment, so alternating them reinstalls nothing:
`run` installs only what serving needs (the base dependencies) into ./.venv, `test`
adds the test and training extras in ./.venv-test. Both install the pinned versions
from constraints.txt on first use, and again only when pyproject.toml or
constraints.txt change. Without DATABASE_URL / REDIS_URL everything is embedded
(SQLite, tasks in-process); with them the same commands use PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BIN = "Scripts" if os.name == "nt" else "bin"
CHROMIUM = Path("/usr/bin/chromium")
STAMP = ".installed"  # in each environment: the digest of what it was installed from


@dataclass(frozen=True)
class Env:
    path: Path
    extras: str  # the project's extras, "" for the base dependencies only
    first: tuple[str, ...] = ()  # requirements installed, pinned, before the project

    @property
    def python(self) -> Path:
        return self.path / BIN / "python"

    @property
    def target(self) -> str:
        return f".[{self.extras}]" if self.extras else "."


# `run`: the base dependencies, what serving needs. No Playwright, scipy, statsmodels, torch.
RUN = Env(ROOT / ".venv", "")
# `test`: torch first and pinned, the CPU build; left to the resolver, a newer torch with
# CUDA wheels (gigabytes) would be chosen.
TEST = Env(ROOT / ".venv-test", "test,train", ("torch==2.13.0",))


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def adopt_old_layout() -> None:
    """Until both commands had their own environment, one ./.venv held whatever the last
    command installed (stamped '.installed-test' or '.installed-test,train'): it becomes
    ./.venv-test, moved rather than reinstalled, and `run` makes itself a light ./.venv."""
    old = sorted(RUN.path.glob(".installed-*"))
    if not old:
        return
    if TEST.path.exists():
        say(f"removing the old {RUN.path.name} (it held the test stack; {TEST.path.name} has it now)")
        shutil.rmtree(RUN.path)
        return
    say(f"moving the old {RUN.path.name} (it holds the test stack) to {TEST.path.name}")
    RUN.path.rename(TEST.path)
    # Scripts and activate name their environment by absolute path.
    before = re.compile(re.escape(str(RUN.path).encode()) + rb"(?![\w.-])")
    for script in [*(TEST.path / BIN).iterdir(), TEST.path / "pyvenv.cfg"]:
        if script.is_symlink() or not script.is_file() or script.stat().st_size > 1 << 20:
            continue
        text = script.read_bytes()
        moved = before.sub(str(TEST.path).encode(), text)
        if moved != text:
            script.write_bytes(moved)
    # Same digest formula: unchanged pyproject.toml and constraints.txt need no reinstall.
    (TEST.path / old[-1].name).rename(TEST.path / STAMP)
    for stamp in old[:-1]:
        (TEST.path / stamp.name).unlink()


def ensure_env(env: Env) -> None:
    if not (3, 11) <= sys.version_info[:2] < (3, 14):
        sys.exit(f"Python 3.11, 3.12 or 3.13 is needed; this is {sys.version.split()[0]}")
    adopt_old_layout()
    stamp = env.path / STAMP
    digest = hashlib.sha256(
        b"".join((ROOT / name).read_bytes() for name in ("pyproject.toml", "constraints.txt")) + env.extras.encode()
    ).hexdigest()
    if env.python.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    if not env.python.exists():
        say(f"creating {env.path.name}")
        venv.create(env.path, with_pip=True)
    say(f"installing prefdata{env.target[1:]} into {env.path.name} with the pinned versions (constraints.txt)")
    # The pip that comes with the environment installs every pin; upgrading it first would
    # cost seconds on each install for nothing.
    pip = (env.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", "constraints.txt")
    if env.first:
        sh(*pip, *env.first)
    sh(*pip, "-e", env.target)
    stamp.write_text(digest)


def run(argv: list[str]) -> None:
    ensure_env(RUN)
    env = {**os.environ}
    env.setdefault("DEBUG", "1")
    port = argv[0] if argv else env.get("PORT", "8000")
    where = " (SQLite under ./var)" if "DATABASE_URL" not in env else ""
    say(f"migrating the database{where} and seeding the demo project")
    # One process for migrate, seed_demo and seed_demo_history: Django starts once. The
    # system checks are left to runserver, which runs them next (and on every reload).
    sh(RUN.python, "manage.py", "demo_setup", "--skip-checks", env=env)
    say(f"serving on http://127.0.0.1:{port}/  (Ctrl-C stops it)")
    os.execve(str(RUN.python), [str(RUN.python), "manage.py", "runserver", f"127.0.0.1:{port}"], env)


# The checked style (docs/style.md), run before the whole suite.
CHECKS = (
    ("ruff", ("-m", "ruff", "check", "--quiet", ".")),
    ("ruff format", ("-m", "ruff", "format", "--check", "--quiet", ".")),
    ("import contracts", ("-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())")),
    ("mypy", ("-m", "mypy", ".")),
)


def check(env: dict[str, str]) -> None:
    for name, args in CHECKS:
        say(f"checking: {name}")
        result = subprocess.run([str(TEST.python), *args], cwd=ROOT, env=env)
        if result.returncode != 0:
            say(f"{name} failed: fix the above (the tests did not run)")
            sys.exit(result.returncode)


def test(argv: list[str]) -> None:
    ensure_env(TEST)
    env = {**os.environ}
    if not argv:
        check(env)
    db = env.get("DATABASE_URL", "")
    if db.startswith("postgres"):
        say(f"database: PostgreSQL ({db.rsplit('@', 1)[-1]})")
    else:
        say("database: SQLite. Tests marked 'postgres' are skipped; set DATABASE_URL=postgres://... to run them")
    if not CHROMIUM.exists() and not env.get("CHROMIUM_PATH"):
        say("no Chromium at /usr/bin/chromium: browser tests are skipped (apt-get install chromium)")
    os.execve(str(TEST.python), [str(TEST.python), "-m", "pytest", *argv], env)


def main() -> None:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    os.chdir(ROOT)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
