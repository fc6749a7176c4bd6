"""Every limit jesus enforces, in one place, each with its name and default."""

from __future__ import annotations

from dataclasses import dataclass

from jesus.errors import TooLarge

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits a server enforces on its peers, and a client on its servers.

    Each is reported to the peer in the handshake where the protocol has one; exceeding one
    gives the caller a typed error (TooLarge, Unavailable) and keeps the server up.
    """

    # Largest frame payload (envelope after compression), in bytes.
    max_message_size: int = 16 * MiB
    # Largest payload after decompression: a compression bomb stops here.
    max_decompressed_size: int = 64 * MiB
    # Values one message may decode to (each container and each value it holds counts one),
    # so that a few bytes cannot become gigabytes of objects; longer containers are refused
    # before they are built.
    max_decoded_items: int = 1_000_000
    # Bytes of decoded requests one peer may have in flight (a connection; on a datagram
    # transport, all its senders); past it calls get UNAVAILABLE until earlier ones finish.
    max_inflight_bytes: int = 64 * MiB
    # The same, for all the peers of one server together.
    max_server_inflight_bytes: int = 256 * MiB
    # Calls a server runs at once for one connection; more get UNAVAILABLE.
    max_inflight_calls: int = 1024
    # Connections a server accepts at once; more are refused. Sized for a service that every
    # machine of a 1,000-node system calls (one connection each through its node daemon,
    # more without), with room for restarts; serve() raises the process's open-file limit
    # to match (docs/scale.md).
    max_connections: int = 4096
    # Stream items a receiver lets the sender have in flight (credit window)...
    stream_window: int = 512
    # ...and their bytes: whatever the item size, a stream holds about this much in flight.
    stream_window_bytes: int = 1 * MiB
    # Seconds a new connection has to complete the handshake.
    handshake_timeout: float = 10.0
    # Seconds of silence before a keep-alive ping; a peer silent three times as long is dropped.
    keepalive_interval: float = 30.0
    # Bytes a connection may queue for writing before senders wait.
    write_buffer_size: int = 4 * MiB
    # Payloads at least this large are compressed; smaller ones are not worth it.
    compress_threshold: int = 512
    # HTTP: largest request or response head (request line or status line and headers).
    max_header_size: int = 16 * 1024
    # HTTP: seconds a client has to send a whole request once it started (slow clients,
    # "slowloris", are cut off).
    request_timeout: float = 10.0
    # HTTP: seconds an idle keep-alive connection is kept open.
    idle_timeout: float = 60.0
    # Sealing: how far a sealed request's timestamp may be from this clock (replays older
    # than this are refused by time, newer ones by their counter), and how many callers'
    # data keys a server keeps at once (each with its replay window).
    seal_window: float = 60.0
    max_seal_grants: int = 10_000
    # Datagram transports: largest datagram sent or accepted (header and compressed payload).
    max_datagram_size: int = 8192
    # Datagram transports: seconds a receiver remembers a message id to drop retransmissions
    # (at least the message's own deadline, so a handler never runs twice for one message).
    dedup_window: float = 60.0
    # Datagram transports: messages remembered at once; the oldest are forgotten first.
    dedup_capacity: int = 100_000
    # Datagram transports: first retransmission delay in seconds, doubled up to retry_max.
    retry_initial: float = 0.05
    retry_max: float = 1.0


def check_message_size(size: int, limit: int) -> None:
    """The rule of max_message_size, the same on every transport: a payload (after
    compression) larger than `limit` is refused with TOO_LARGE, on the way out and in."""
    if size > limit:
        raise TooLarge(f"message of {size} bytes exceeds max_message_size ({limit})")
