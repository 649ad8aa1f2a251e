"""Settings, read from the environment (see README §Configuration).

Embedded default (nothing set): SQLite under ./var, Celery tasks executed
in-process, local-memory cache, files under ./var/media. Setting DATABASE_URL
and REDIS_URL switches the same code to PostgreSQL and a real Celery worker.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE), or DEBUG=1 for local development."
        )
    SECRET_KEY = "django-insecure-local-development-only-" + "x" * 20
elif not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters in production (DEBUG=0).")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this site serves when DEBUG=0.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "csp",
    "accounts",
    "annotation",
    "models_service",
    "imports",
    "insights",
    "rlhf_export",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a locked-out login into the login page saying so (accounts/lockout.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.roles.roles_context",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
except Exception as exc:  # dj_database_url raises plain ValueError/KeyError on junk
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} cannot be parsed: {exc}") from exc
if _db["ENGINE"] not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
    raise ImproperlyConfigured(
        f"DATABASE_URL uses {_db['ENGINE']!r}; supported are postgres:// (psycopg 3) and sqlite://"
    )
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["CONN_MAX_AGE"] = 0
    # WAL + a busy timeout let the web process and in-process tasks share the file.
    _db["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
else:
    _db["CONN_HEALTH_CHECKS"] = True
    # A database that does not answer (a black-holed address) fails a request, /healthz or
    # a worker's heartbeat within seconds instead of hanging it (psycopg / libpq option).
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5, minimum=1))
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery and cache ----------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL) or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker the tasks run in-process, through the same code path.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", CELERY_BROKER_URL == "memory://")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # The sweeper only queues jobs: it runs beside beat, not on a GPU worker.
    "models_service.tasks.requeue_abandoned_sampling": {"queue": "default"},
    "models_service.tasks.*": {"queue": "gpu"},
    "rlhf_export.tasks.*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is re-delivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 6 * 3600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 6 * 3600 - 60, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 600,
    # A broker that does not answer costs a request seconds, not minutes: queueing then
    # fails soft (core/tasks.py, task_queue) and the job waits for the sweepers. Measured
    # against a real redis-server: refused at once when stopped, 9 s when it hangs.
    "socket_connect_timeout": 2,
    "socket_timeout": 3,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# One immediate retry (a pooled connection that died with a Redis restart), not three.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# The sweepers (below) run this often; they queue again running jobs whose heartbeat is
# older than EXPORT_STALE_SECONDS / SAMPLING_STALE_SECONDS (their worker died), jobs that
# could not be queued (the broker was down), and jobs queued this long ago that no worker
# has started (their message was lost), at most once per JOB_PENDING_REQUEUE_SECONDS.
JOB_SWEEP_SECONDS = env_int("JOB_SWEEP_SECONDS", 15, minimum=1)
JOB_PENDING_REQUEUE_SECONDS = env_int("JOB_PENDING_REQUEUE_SECONDS", 300, minimum=1)
# Periodic jobs; docker-compose's worker runs the beat scheduler (``-B``: one worker service).
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {
        "task": "annotation.tasks.reclaim_expired_leases",
        "schedule": env_int("LEASE_RECLAIM_SECONDS", 30, minimum=1),
        "options": {"queue": "default", "expires": 25},
    },
    # Jobs whose worker died, whose queueing failed or whose message was lost are queued again.
    "requeue-abandoned-exports": {
        "task": "rlhf_export.tasks.requeue_abandoned_exports",
        "schedule": JOB_SWEEP_SECONDS,
        "options": {"queue": "default", "expires": JOB_SWEEP_SECONDS},
    },
    "requeue-abandoned-sampling": {
        "task": "models_service.tasks.requeue_abandoned_sampling",
        "schedule": JOB_SWEEP_SECONDS,
        "options": {"queue": "default", "expires": JOB_SWEEP_SECONDS},
    },
}

if REDIS_URL:
    # Redis is optional for the site (core/cache.py): unreachable, it is an empty cache.
    # Short timeouts because everything cached can be read from the database instead.
    CACHES = {
        "default": {
            "BACKEND": "core.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "DOWN_SECONDS": 5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# /healthz answers 503 when one of these is down (core/health.py): the database, and the
# cache and the broker where this deployment has them. The workers are reported always
# and required only when listed here or in the request (?require=...).
HEALTHZ_REQUIRE = env_list(
    "HEALTHZ_REQUIRE",
    ["database"] + (["cache"] if REDIS_URL else []) + ([] if CELERY_TASK_ALWAYS_EAGER else ["broker"]),
)
if _unknown := sorted(set(HEALTHZ_REQUIRE) - {"database", "cache", "broker", "workers"}):
    raise ImproperlyConfigured(
        f"HEALTHZ_REQUIRE names {', '.join(_unknown)}; choose from database, cache, broker, workers"
    )

# --- Files ----------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")) or "")
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")) or "")
MEDIA_URL = "media/"
_S3_BUCKET = env_str("S3_BUCKET")
_default_storage: dict = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if _S3_BUCKET:
    # S3-compatible object storage through django-storages (pip install .[s3]).
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL"),
            "access_key": env_str("S3_ACCESS_KEY_ID"),
            "secret_key": env_str("S3_SECRET_ACCESS_KEY"),
            "location": env_str("S3_PREFIX", "") or "",
        },
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Imports stream from disk: uploads above 2.5 MB go to a temporary file, never to memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed logins (django-axes) are counted per username and client address, in the
# database (so the count holds when Redis is down). After LOGIN_FAILURE_LIMIT failures
# that pair is locked out for LOGIN_COOLOFF_MINUTES, on the site's and the admin's login
# alike: the login page says so (accounts/lockout.py). A correct password clears the
# count, and so does a completed password reset.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out pair is refused before its password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A try while locked out is refused but not counted: the cool-off runs from the lockout, so
# "try again in 15 minutes" stays true for someone who tries a little early.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
# Reverse proxies in front of web that append the client's address to X-Forwarded-For:
# 0 reads REMOTE_ADDR; behind one TLS proxy (docker-compose's set-up) set 1, or every
# login shares the proxy's address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- E-mail (password reset) ----------------------------------------------------------
# Development prints mails on the console; production sends them through SMTP.
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS (STARTTLS, port 587) and EMAIL_USE_SSL (port 465) exclude each other.")
# A hung mail server must not hold a web worker: the reset page waits at most this long.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "prefdata <noreply@localhost>") or "prefdata <noreply@localhost>"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security (check --deploy is clean when DEBUG=0) ----------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts and styles come only from our static
# files; no inline script, no inline style, no eval, nothing from another origin.
# Scripts get their data from data- attributes or json_script blocks (not executed).
# The one route-specific policy is Redoc's (config/urls.py). docs/security.md.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # data: for the blank favicon and Swagger UI's icons
        "font-src": [SELF],
        "connect-src": [SELF],  # htmx, fetch and the live mode's event streams
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON bodies nested too deep or holding text no database column takes are a 400.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "prefdata API",
    "DESCRIPTION": "Human preference data for RLHF: projects, rounds, prompts, samples, comparisons, "
    "judgments, imports and exports.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge image fetched from validator.swagger.io (the CSP allows our own origin only).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Ids in URLs (core/limits.py, <id:...>): integers a 64-bit column holds.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**63 - 1}},
    # Choice sets used by several serializers get one name each in the schema.
    "ENUM_NAME_OVERRIDES": {
        "RoundStatusEnum": "annotation.models.RoundStatus",
        "ExportKindEnum": "rlhf_export.models.ExportKind",
    },
}

# --- Domain knobs ---------------------------------------------------------------------
IMPORT_BATCH_SIZE = env_int("IMPORT_BATCH_SIZE", 2000, minimum=1)
IMPORT_MAX_ERRORS = env_int("IMPORT_MAX_ERRORS", 100, minimum=1)
# The largest file the upload page and the API take, refused before it is read (an
# import runs inside the request: bigger files go through `manage.py import_data`), and
# the longest record any import takes: a JSONL or CSV line, an item of a JSON array.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 256 * 1024 * 1024, minimum=1)
IMPORT_MAX_RECORD_BYTES = env_int("IMPORT_MAX_RECORD_BYTES", 8 * 1024 * 1024, minimum=1024)
# Sampling (models_service): prompts per batch handed to a backend, tries per prompt
# within one run of a job, and how long a running job may go without a heartbeat
# before another delivery of its task takes it over (a thread beats every third of it
# while the job runs, core/tasks.py: a long batch never looks dead).
SAMPLING_BATCH_SIZE = env_int("SAMPLING_BATCH_SIZE", 64, minimum=1)
SAMPLING_MAX_ATTEMPTS = env_int("SAMPLING_MAX_ATTEMPTS", 3, minimum=1)
SAMPLING_STALE_SECONDS = env_int("SAMPLING_STALE_SECONDS", 30, minimum=3)
# Live prompts an annotator may start per hour (each costs two generations); 0: no limit.
LIVE_TURNS_PER_HOUR = env_int("LIVE_TURNS_PER_HOUR", 120, minimum=0)
# Hosts `openai` model versions may send prompts (and API keys) to, comma-separated: host
# names (vllm), wildcards (*.example.com), addresses and ranges (10.0.0.7, 10.20.0.0/16).
# Loopback, link-local and other special addresses only when listed as addresses;
# checked when a version is saved and again at every connection (models_service/outbound.py,
# docs/model-servers.md). Default: this machine in DEBUG (the embedded demo), nothing otherwise.
MODEL_HOSTS_ALLOWED = env_list("MODEL_HOSTS_ALLOWED", ["localhost", "127.0.0.1", "::1"] if DEBUG else [])
try:
    from models_service.outbound import HostPolicy

    HostPolicy.parse(MODEL_HOSTS_ALLOWED)
except ValueError as exc:
    raise ImproperlyConfigured(f"MODEL_HOSTS_ALLOWED: {exc}") from exc
# Exports (rlhf_export): judgments read per batch (one progress/heartbeat UPDATE each),
# seconds without a heartbeat after which a running job counts as abandoned (its worker
# died) and may be taken over (beats every third of it, core/tasks.py), where files go
# in storage, and a local work folder for shards bound for non-local storage (S3).
EXPORT_BATCH_SIZE = env_int("EXPORT_BATCH_SIZE", 5000, minimum=1)
EXPORT_STALE_SECONDS = env_int("EXPORT_STALE_SECONDS", 30, minimum=1)
EXPORT_STORAGE_PREFIX = (env_str("EXPORT_STORAGE_PREFIX", "exports") or "exports").strip("/") or "exports"
EXPORT_WORK_DIR = Path(env_str("EXPORT_WORK_DIR", str(VAR_DIR / "export-work")) or VAR_DIR / "export-work")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Django's default config gives "django" its own console handler under DEBUG; with ours
    # on the root as well, every warning (a 403, a 404) was printed twice.
    "loggers": {"django": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO"), "propagate": False}},
}
