"""tests/issuer/test_audit.py with every key SM2 (see conftest)."""

from tests.issuer import test_audit as _base

globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
