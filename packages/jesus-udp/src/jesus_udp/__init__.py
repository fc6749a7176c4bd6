"""jesus-udp: the datagram transport. The datagram layout and the de-duplication window are
sans-IO in `jesus.protocol`; this package moves datagrams."""

from jesus_udp.transport import UdpTransport

__all__ = ["UdpTransport"]
