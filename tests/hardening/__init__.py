"""Memory-bound tests: hostile clients against a server in another process, whose RSS is read
from /proc while the attack runs."""
