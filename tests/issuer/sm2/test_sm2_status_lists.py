"""tests/issuer/test_status_lists.py with every key SM2 (see conftest)."""

from tests.issuer import test_status_lists as _base

globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
