"""The metric instruments of one meter, one set per side of a call."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter

from jesus_otel import semconv as sc


@dataclass(frozen=True, slots=True)
class Side:
    """What one side (client or server) records: the duration of calls and of events apart,
    as the conventions name them, and jesus's own counts for both."""

    call_duration: Histogram
    event_duration: Histogram
    events: Counter  # messages sent (client) or processed (server)
    active: UpDownCounter
    errors: Counter
    request_size: Counter | None  # server only: the client never sees the encoded bytes


def _duration(meter: Meter, name: str, what: str) -> Histogram:
    return meter.create_histogram(
        name,
        unit="s",
        description=what,
        explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
    )


def client_side(meter: Meter) -> Side:
    return Side(
        call_duration=_duration(meter, sc.RPC_CLIENT_DURATION, "Duration of outgoing calls."),
        event_duration=_duration(
            meter, sc.MESSAGING_CLIENT_DURATION, "Duration of an event's delivery to a group."
        ),
        events=meter.create_counter(
            sc.MESSAGING_SENT, unit="{message}", description="Event deliveries attempted."
        ),
        active=meter.create_up_down_counter(
            sc.CLIENT_ACTIVE, unit="{call}", description="Outgoing calls and deliveries in flight."
        ),
        errors=meter.create_counter(
            sc.CLIENT_ERRORS, unit="{error}", description="Outgoing calls that failed, by error."
        ),
        request_size=None,
    )


def server_side(meter: Meter) -> Side:
    return Side(
        call_duration=_duration(meter, sc.RPC_SERVER_DURATION, "Duration of incoming calls."),
        event_duration=_duration(
            meter, sc.MESSAGING_PROCESS_DURATION, "Duration of a listener's handling of an event."
        ),
        events=meter.create_counter(
            sc.MESSAGING_CONSUMED, unit="{message}", description="Events handed to listeners."
        ),
        active=meter.create_up_down_counter(
            sc.SERVER_ACTIVE, unit="{call}", description="Incoming calls and events in flight."
        ),
        errors=meter.create_counter(
            sc.SERVER_ERRORS, unit="{error}", description="Incoming calls that failed, by error."
        ),
        request_size=meter.create_counter(
            sc.SERVER_REQUEST_SIZE,
            unit="By",
            description="Bytes of requests received, decompressed (tcp, udp: the envelope; http: the body).",
        ),
    )
