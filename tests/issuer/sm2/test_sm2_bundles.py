"""tests/issuer/test_bundles.py with every key SM2 (see conftest)."""

from tests.issuer import test_bundles as _base

globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
