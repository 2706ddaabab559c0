"""tests/issuer/test_receipts.py with every key SM2 (see conftest)."""

from tests.issuer import test_receipts as _base

globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
