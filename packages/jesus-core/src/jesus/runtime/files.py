"""Room for a server's connections among the process's file descriptors."""

from __future__ import annotations

import logging

log = logging.getLogger("jesus.node")
# Descriptors a process needs besides its servers' connections: files, its own outgoing
# connections (registry, peers), the listening sockets.
HEADROOM = 256
_warned = False


def make_room_for(connections: int) -> int:
    """Raise the soft limit on open files (RLIMIT_NOFILE) to hold `connections` and some
    headroom, up to the hard limit, as Go's runtime does at start: a default soft limit of
    1024 would refuse connections long before max_connections. Returns the soft limit now;
    warns once when the hard limit is too low."""
    global _warned
    try:
        import resource
    except ImportError:  # not a POSIX system
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    want = connections + HEADROOM
    if soft == infinite or soft >= want:
        return soft
    target = want if hard == infinite else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below the hard limit
            log.debug("could not raise the open-file limit to %d: %s", target, exc)
    if soft < want and not _warned:
        _warned = True
        log.warning(
            "this process may open %d files (the hard limit, ulimit -Hn), but its servers "
            "accept up to %d connections: raise the limit (LimitNOFILE= in a systemd unit, "
            "ulimit -n) or lower Limits.max_connections",
            soft,
            connections,
        )
    return soft
