"""The development CA of the security tests, for CURVE (tests/zmq/test_curve.py)."""

from tests.security.conftest import pki

__all__ = ["pki"]
