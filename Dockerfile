# prefdata images, built by docker-compose.yml:
#   target "app" (default): web (gunicorn), worker (Celery, queue default)
#   target "gpu":           gpu-worker (Celery, queue gpu) = app + the `gpu` extra (vLLM)
#
#   docker build -t prefdata .                       # app
#   docker build --target gpu -t prefdata-gpu .      # app + vLLM
#
# Written for both the classic builder and BuildKit: no --chmod, no cache mounts.
# constraints.txt (the pinned versions dev.py installs) is used when it is present.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtual environment with the project and its pinned dependencies -----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when pyproject.toml or
# constraints.txt change. The [t] glob makes constraints.txt optional.
COPY pyproject.toml README.md constraints.tx[t] ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && if [ -f constraints.txt ]; then set -- -c constraints.txt; else set --; fi \
 && pip install "$@" -r /tmp/requirements.txt

# Extra packages for optional features, e.g. EXTRA_PIP_PACKAGES="django-storages[s3]"
# for S3_BUCKET (see README, Configuration).
ARG EXTRA_PIP_PACKAGES=""
RUN set -f; if [ -n "$EXTRA_PIP_PACKAGES" ]; then \
        if [ -f constraints.txt ]; then set -- -c constraints.txt; else set --; fi; \
        pip install "$@" $EXTRA_PIP_PACKAGES; \
    fi

# Then the project itself (`pip install .`), with the same constraints.
COPY . .
RUN if [ -f constraints.txt ]; then set -- -c constraints.txt; else set --; fi \
 && pip install "$@" . \
 && rm -rf build ./*.egg-info

# --- app: the runtime image for web and worker -------------------------------------
FROM ${PYTHON_IMAGE} AS app

# PYTHONPATH=/app: gunicorn, celery and manage.py import the source under /app (which
# has templates/ and static/ beside it), never the copy installed in site-packages.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    VAR_DIR=/data \
    MEDIA_ROOT=/data/media \
    STATIC_ROOT=/app/staticfiles

# A fixed, unprivileged uid/gid (10001) so volume ownership is predictable.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The source stays owned by root: the app user can read it, not change it.
COPY . .

# Static files are collected at build time (served by WhiteNoise from STATIC_ROOT).
# Settings refuse to load without a secret when DEBUG=0; this one exists only here.
RUN chmod 0755 docker/entrypoint.sh \
 && SECRET_KEY=build-only-collectstatic-key-never-used-at-run-time-0123456789abcdef \
    ALLOWED_HOSTS=localhost DEBUG=0 \
    python manage.py collectstatic --noinput \
 && mkdir -p /data/media /data/hf \
 && chown -R app:app /data

# /data: VAR_DIR, with MEDIA_ROOT (exports, uploads) and HF_HOME below it; compose mounts
# named volumes there, which start out owned by app because these directories are.
USER app
EXPOSE 8000

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--worker-tmp-dir", "/dev/shm", "--access-logfile", "-"]

# --- gpu: app + the `gpu` extra (vLLM) for the gpu-worker -----------------------------
FROM app AS gpu

USER root
# Triton (under vLLM / torch) compiles small C helpers at run time: it needs a C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# `pip install .[gpu]` from the builder's copy of the source. Not with constraints.txt:
# it pins the CPU torch of the test stack, and vLLM pins its own torch and transformers.
# Dependencies already installed keep their versions unless vLLM requires others.
COPY --from=builder /src /tmp/src
RUN cd /tmp/src \
 && pip install ".[gpu]" \
 && cd / && rm -rf /tmp/src

ENV HF_HOME=/data/hf \
    VLLM_WORKER_MULTIPROC_METHOD=spawn
USER app
CMD ["celery", "-A", "config", "worker", "-Q", "gpu", "-l", "info", "--concurrency", "1"]
