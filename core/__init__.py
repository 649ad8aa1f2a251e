"""The bottom layer: helpers every app may use and that import no app of ours.

- ``core.text``: message normalisation and hashing, text hashes, the identity-term matcher;
- ``core.api``: the REST API's shared plumbing (base view, pagination, error handler, 404s).
"""
