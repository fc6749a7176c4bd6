"""jesus-zmq: the framed protocol of PROTOCOL.md over zeromq ROUTER/DEALER sockets, one frame
per ZMQ message. Written only against the public plugin API (`jesus.transport`,
`jesus.protocol`)."""

from jesus_zmq.transport import ZmqTransport

__all__ = ["ZmqTransport"]
