"""HTTP health check for the web container: GET /healthz?require=database on the local gunicorn.

Exit 0 on HTTP 200, 1 otherwise (Docker's HEALTHCHECK / compose healthcheck contract).
Standard library only: the slim image has no curl.

Only the database is required here (core/health.py): the web container is healthy when
it can serve pages from its database. Redis (cache, broker) and the workers are still
reported in the answer, but a Redis or worker outage must not mark web unhealthy and
have it restarted - that mends nothing, and annotators keep working without them.

Two production settings would otherwise turn a healthy site into a failing check:
- ALLOWED_HOSTS: the request carries the first configured host name as its Host header
  (a leading-dot wildcard loses its dot; "*" becomes "localhost").
- SECURE_SSL_REDIRECT: the request carries ``X-Forwarded-Proto: https``, exactly what
  the TLS-terminating proxy in front of web sends (SECURE_PROXY_SSL_HEADER), so Django
  answers instead of redirecting to https.
"""

from __future__ import annotations

import http.client
import os
import sys

PORT = int(os.environ.get("HEALTHCHECK_PORT", "8000"))
PATH = os.environ.get("HEALTHCHECK_PATH", "/healthz?require=database")


def host_header() -> str:
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = hosts[0] if hosts else "localhost"
    if host == "*":
        return "localhost"
    return host.lstrip(".") or "localhost"


def main() -> int:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    try:
        conn.request("GET", PATH, headers={"Host": host_header(), "X-Forwarded-Proto": "https"})
        response = conn.getresponse()
        body = response.read(500)
    except OSError as exc:
        print(f"healthcheck: {PATH} unreachable: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if response.status != 200:
        print(f"healthcheck: {PATH} answered HTTP {response.status}: {body!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
