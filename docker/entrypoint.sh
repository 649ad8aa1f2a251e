#!/bin/sh
# Container entrypoint for every prefdata role (web, worker, gpu-worker).
#
# RUN_MIGRATIONS=1 (set for the web service only) applies the database migrations
# before the command starts, so exactly one role migrates; the workers start on the
# schema web has brought up to date. Then the command replaces this shell (exec), so
# gunicorn / celery run as PID 1's child under tini and receive SIGTERM directly.
set -eu

case "${RUN_MIGRATIONS:-0}" in
  1 | true | yes | on)
    echo "entrypoint: applying database migrations"
    python manage.py migrate --noinput
    ;;
esac

exec "$@"
