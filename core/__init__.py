"""The bottom layer: helpers every app may use and that import no app of ours.

- ``core.text``: message normalisation and hashing, text hashes, the identity-term matcher;
- ``core.api``: the REST API's shared plumbing (base view, pagination, error handler, 404s);
- ``core.parsers``: the API's JSON parser, which refuses what no database column holds;
- ``core.limits``: bounds on what clients send (ids in URLs, JSON depth, NUL characters);
- ``core.cache``: the Redis cache the site can do without (an unreachable Redis is a miss);
- ``core.tasks``: queueing that survives a broker outage, the sweepers' re-queue guard,
  the jobs' heartbeat thread;
- ``core.health`` and ``core.views``: /healthz, each dependency reported on its own.
"""
