"""Settings, read from the environment (see README §Configuration).

Embedded default (nothing set): SQLite under ./var, Celery tasks executed
in-process, local-memory cache, files under ./var/media. Setting DATABASE_URL
and REDIS_URL switches the same code to PostgreSQL and a real Celery worker.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
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
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600}
# Periodic jobs; docker-compose's worker runs the beat scheduler (``-B``: one worker service).
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {
        "task": "annotation.tasks.reclaim_expired_leases",
        "schedule": env_int("LEASE_RECLAIM_SECONDS", 30, minimum=1),
        "options": {"queue": "default", "expires": 25},
    },
    # Jobs whose queued message was lost or whose worker died for good are queued again.
    "requeue-abandoned-exports": {
        "task": "rlhf_export.tasks.requeue_abandoned_exports",
        "schedule": 60,
        "options": {"queue": "default", "expires": 55},
    },
    "requeue-abandoned-sampling": {
        "task": "models_service.tasks.requeue_abandoned_sampling",
        "schedule": 60,
        "options": {"queue": "default", "expires": 55},
    },
}

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets used by several serializers get one name each in the schema.
    "ENUM_NAME_OVERRIDES": {
        "RoundStatusEnum": "annotation.models.RoundStatus",
        "ExportKindEnum": "rlhf_export.models.ExportKind",
    },
}

# --- Domain knobs ---------------------------------------------------------------------
IMPORT_BATCH_SIZE = env_int("IMPORT_BATCH_SIZE", 2000, minimum=1)
IMPORT_MAX_ERRORS = env_int("IMPORT_MAX_ERRORS", 100, minimum=1)
# Sampling (models_service): prompts per batch handed to a backend, tries per prompt
# within one run of a job, and how long a running job may go without a heartbeat
# before another delivery of its task takes it over.
SAMPLING_BATCH_SIZE = env_int("SAMPLING_BATCH_SIZE", 64, minimum=1)
SAMPLING_MAX_ATTEMPTS = env_int("SAMPLING_MAX_ATTEMPTS", 3, minimum=1)
SAMPLING_STALE_SECONDS = env_int("SAMPLING_STALE_SECONDS", 900, minimum=30)
# Live prompts an annotator may start per hour (each costs two generations); 0: no limit.
LIVE_TURNS_PER_HOUR = env_int("LIVE_TURNS_PER_HOUR", 120, minimum=0)
# Exports (rlhf_export): judgments read per batch (one progress/heartbeat UPDATE each),
# seconds without a heartbeat after which a running job counts as abandoned (its worker
# died) and may be taken over, where files go in storage, and a local work folder for
# shards bound for non-local storage (S3).
EXPORT_BATCH_SIZE = env_int("EXPORT_BATCH_SIZE", 5000, minimum=1)
EXPORT_STALE_SECONDS = env_int("EXPORT_STALE_SECONDS", 300, minimum=1)
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
