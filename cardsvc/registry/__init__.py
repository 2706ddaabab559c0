"""The registry: persons, cards, their lifecycle and the status lists that publish it.

Domain services only: no HTTP imports. The API routers and the CLI call these; the
database enforces the invariants these services rely on (unique citizen ID numbers and
card numbers, one live card per person, unique status indexes).
"""
