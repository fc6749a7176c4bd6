"""Schema compatibility between services: the rules, and the checks run at start and by
`jesus check`."""

from jesus.compat.report import Finding, Report
from jesus.compat.rules import accepts_all

__all__ = ["Finding", "Report", "accepts_all"]
