"""Settings for the test suite: production settings (DEBUG off) with test secrets.

The environment is filled in before config.settings reads it, so DATABASE_URL and
REDIS_URL given by the caller (CI: PostgreSQL and Redis) still win.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "0123456789abcdef" * 3)
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("SESSION_COOKIE_SECURE", "0")
os.environ.setdefault("CSRF_COOKIE_SECURE", "0")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("DEBUG", "0")
# Tasks run in-process unless a test starts a real worker itself (those tests set up
# their own Celery app configuration); a broker with no worker would hang the suite.
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

from config.settings import *
from config.settings import STORAGES

# Manifest storage needs collectstatic; tests render templates without it.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests

# Each test process gets its own database, so parallel runs (several developers'
# helpers, a benchmark beside the suite) never drop each other's test database.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}

# Parallel test runs share one Redis: keep their cache keys apart.
CACHES["default"]["KEY_PREFIX"] = f"test{os.getpid()}"

# WhiteNoise warns on every request when STATIC_ROOT is missing (no collectstatic in tests).
STATIC_ROOT = VAR_DIR / "test-static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# The test client's login() authenticates without a request, which axes' backend refuses;
# tests that exercise the lockout (tests/accounts/test_lockout.py, the browser walk in
# tests/e2e/test_csp_browser.py) switch it on with the settings fixture.
AXES_ENABLED = False
