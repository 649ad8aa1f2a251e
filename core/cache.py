"""A Redis cache the site can do without (settings: ``CACHES`` when ``REDIS_URL`` is set).

Everything the hot paths cache - API tokens, roles, projects, open rounds - can be read
from the database again, so Redis being away must cost time, not answers. On a Redis
error every operation behaves as a miss: ``get`` returns the default, ``set`` and
``delete`` do nothing. A connection error or a timeout also opens a circuit breaker for
``DOWN_SECONDS`` (OPTIONS, default 5): meanwhile no operation touches the network, so a
Redis that does not answer costs one short socket timeout per process every few
seconds, not one per request. The warning is logged once per breaker opening (at most
once a minute per process); the return is logged too.

Three operations need more than "a miss":

- ``add`` is a lock or a once-only guard (the dashboards' refresh lock in
  ``insights/cache.py``, the sweepers' re-queue guard in ``core/tasks.py``, the lease
  reclaim's rate limit in ``annotation/assignment.py``). Answering True would let every
  request start the guarded work; answering False would stop it for as long as Redis is
  away. While Redis is down it is taken from a lock table in this process instead, with
  the same timeout: the work still happens, once per window per process instead of once
  per window per site.
- ``delete`` drops entries that must not outlive a change (a revoked token, a role
  taken away). A delete that could not reach Redis is remembered (per process, up to
  ``LOST_DELETES_MAX`` keys) and replayed before the next operation that reaches it, so
  an entry written before the outage is not served again once Redis is back. Entries
  also expire by themselves (at most minutes for those, ``accounts/authentication.py``).
- ``clear`` never falls back to anything: it only empties what it can reach.

``cache_is_down`` tells callers that would otherwise compute something only to lose it
(``insights/cache.py``) to compute it on the spot. ``ping`` is /healthz's probe
(``core/health.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

logger = logging.getLogger(__name__)

T = TypeVar("T")

DOWN_SECONDS = 5.0
LOG_EVERY_SECONDS = 60.0
LOST_DELETES_MAX = 10_000
LOCAL_LOCKS_MAX = 10_000


class _Breaker:
    """Shared by every thread's backend instance on one Redis location: Django keeps one
    cache object per thread, and a dead Redis should be found out once per process."""

    def __init__(self, down_seconds: float) -> None:
        self.down_seconds = down_seconds
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.down_since: float | None = None
        self.logged_at = -LOG_EVERY_SECONDS
        self.last_error = ""
        self.lost_deletes: set[str] = set()
        self.locks: dict[str, float | None] = {}  # add() while down: key -> expiry (monotonic)

    def is_open(self) -> bool:
        return time.monotonic() < self.down_until

    def trip(self, exc: Exception, operation: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.down_until = now + self.down_seconds
            self.last_error = type(exc).__name__
            if self.down_since is None:
                self.down_since = now
            log = now - self.logged_at >= LOG_EVERY_SECONDS
            if log:
                self.logged_at = now
        if log:
            logger.warning(
                "cache: Redis is unreachable (%s on %s: %s); serving without the cache, next try in %.0f s",
                type(exc).__name__,
                operation,
                exc,
                self.down_seconds,
            )

    def reached(self) -> None:
        if self.down_since is None:
            return
        with self.lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            logger.warning("cache: Redis answers again after %.0f s", time.monotonic() - since)

    def forget_later(self, keys: Iterable[str]) -> None:
        with self.lock:
            for key in keys:
                if len(self.lost_deletes) >= LOST_DELETES_MAX:
                    break
                self.lost_deletes.add(key)
                self.locks.pop(key, None)

    def take_lost_deletes(self) -> list[str]:
        if not self.lost_deletes:
            return []
        with self.lock:
            keys, self.lost_deletes = list(self.lost_deletes), set()
        return keys

    def local_add(self, key: str, timeout: float | None) -> bool:
        now = time.monotonic()
        with self.lock:
            expires = self.locks.get(key, 0.0)
            if key in self.locks and (expires is None or expires > now):
                return False
            if len(self.locks) >= LOCAL_LOCKS_MAX:
                self.locks = {k: t for k, t in self.locks.items() if t is None or t > now}
            if timeout is not None and timeout <= 0:
                return True  # Django: a non-positive timeout stores nothing
            self.locks[key] = None if timeout is None else now + timeout
            return True

    def local_delete(self, keys: Iterable[str]) -> None:
        if self.locks:
            with self.lock:
                for key in keys:
                    self.locks.pop(key, None)


_breakers: dict[str, _Breaker] = {}
_breakers_lock = threading.Lock()


def _breaker_for(location: str, down_seconds: float) -> _Breaker:
    with _breakers_lock:
        breaker = _breakers.get(location)
        if breaker is None or breaker.down_seconds != down_seconds:
            breaker = _breakers[location] = _Breaker(down_seconds)
        return breaker


class FailSoftRedisCache(RedisCache):
    """Django's ``RedisCache`` that treats an unreachable Redis as an empty cache."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        down_seconds = float(options.pop("DOWN_SECONDS", DOWN_SECONDS))
        # One immediate retry on a fresh connection: after a Redis restart the pooled
        # connections are dead, and the first command on each must not open the breaker.
        options.setdefault("retry", Retry(NoBackoff(), 1))
        options.setdefault("retry_on_error", [RedisConnectionError])
        super().__init__(server, {**params, "OPTIONS": options})
        self._breaker = _breaker_for(str(server), down_seconds)

    # --- The guard --------------------------------------------------------------------

    def _guard(
        self, operation: str, call: Callable[[], T], fallback: Callable[[], T], deletes: Iterable[str] = ()
    ) -> T:
        breaker = self._breaker
        if breaker.is_open():
            breaker.forget_later(deletes)
            return fallback()
        try:
            lost = breaker.take_lost_deletes()
            if lost:
                try:
                    self._client.delete_many(lost)
                except RedisError:
                    breaker.forget_later(lost)
                    raise
            result = call()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            breaker.trip(exc, operation)
            breaker.forget_later(deletes)
            return fallback()
        except RedisError as exc:  # refused by the server (read-only replica, out of memory): a miss
            logger.warning("cache: Redis refused %s: %s: %s", operation, type(exc).__name__, exc)
            breaker.forget_later(deletes)
            return fallback()
        breaker.reached()
        return result

    @property
    def _client(self) -> Any:
        return self._cache  # type: ignore[attr-defined]  # Django's RedisCacheClient, not in django-stubs

    @property
    def down(self) -> bool:
        """True while the breaker is open (an operation failed in the last few seconds)."""
        return self._breaker.is_open()

    def ping(self) -> str | None:
        """None when Redis answers a PING, else the error's class name. While the breaker
        is open the last error is the answer: a Redis that does not answer costs a
        health check nothing more than it costs a request."""
        if self._breaker.is_open():
            return self._breaker.last_error or "ConnectionError"
        try:
            self._client.get_client(None, write=True).ping()
        except RedisError as exc:
            if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
                self._breaker.trip(exc, "ping")
            return type(exc).__name__
        self._breaker.reached()
        return None

    # --- Django's cache API -----------------------------------------------------------

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        return self._guard(
            "add",
            lambda: RedisCache.add(self, key, value, timeout, version),
            lambda: self._breaker.local_add(made, self.get_backend_timeout(timeout)),
        )

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._guard("get", lambda: RedisCache.get(self, key, default, version), lambda: default)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._guard("set", lambda: RedisCache.set(self, key, value, timeout, version), lambda: None)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard("touch", lambda: RedisCache.touch(self, key, timeout, version), lambda: False)

    def delete(self, key: Any, version: int | None = None) -> bool:
        made = self.make_and_validate_key(key, version=version)
        self._breaker.local_delete([made])
        return self._guard("delete", lambda: RedisCache.delete(self, key, version), lambda: False, deletes=[made])

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._guard("get_many", lambda: RedisCache.get_many(self, keys, version), dict)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._guard("has_key", lambda: RedisCache.has_key(self, key, version), lambda: False)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:

        def missing() -> int:
            raise ValueError(f"Key '{key}' not found (the cache is unreachable).")

        return self._guard("incr", lambda: RedisCache.incr(self, key, delta, version), missing)

    def set_many(self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[Any]:
        return self._guard("set_many", lambda: RedisCache.set_many(self, data, timeout, version), lambda: list(data))

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        keys = list(keys)
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        self._breaker.local_delete(made)
        self._guard("delete_many", lambda: RedisCache.delete_many(self, keys, version), lambda: None, deletes=made)

    def clear(self) -> None:
        with self._breaker.lock:
            self._breaker.locks.clear()
            self._breaker.lost_deletes.clear()
        self._guard("clear", lambda: RedisCache.clear(self), lambda: None)


def cache_is_down(alias: str = "default") -> bool:
    """True while the cache is a Redis that failed in the last few seconds."""
    backend = caches[alias]
    return isinstance(backend, FailSoftRedisCache) and backend.down
