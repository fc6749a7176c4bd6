"""jesus-tcp: the framed, multiplexed stream transport of PROTOCOL.md over TCP, TLS and
unix sockets. The protocol itself is sans-IO in `jesus.protocol`; this package moves bytes."""

from jesus_tcp.transport import TcpTransport, UnixTransport

__all__ = ["TcpTransport", "UnixTransport"]
