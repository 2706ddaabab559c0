"""tests/issuer/test_ecard_offline.py with every key SM2 (see conftest)."""

from tests.issuer import test_ecard_offline as _base

globals().update({k: v for k, v in vars(_base).items() if not k.startswith("__")})
