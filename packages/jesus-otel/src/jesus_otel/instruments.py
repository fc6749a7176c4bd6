"""The metric instruments of one meter, one set per side of a call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
from opentelemetry.metrics import Meter as OtelMeter

from jesus.transport.traffic import CLIENT, SERVER, TRAFFIC, Meter
from jesus_otel import semconv as sc


class Tally:
    """Sums kept here and handed to an observable instrument when metrics are collected: a
    dict update per call, not an SDK measurement (which costs tens of microseconds)."""

    def __init__(self) -> None:
        self._sums: dict[tuple[tuple[str, Any], ...], float] = {}

    def add(self, amount: float, attributes: Mapping[str, Any]) -> None:
        key = tuple(attributes.items())
        self._sums[key] = self._sums.get(key, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # Collected from the exporter's thread: list() copies the items in one step.
        return [Observation(value, dict(key)) for key, value in list(self._sums.items())]


@dataclass(frozen=True, slots=True)
class Side:
    """What one side (client or server) records: the duration of calls and of events apart,
    as the conventions name them, and jesus's own counts for both."""

    call_duration: Histogram
    event_duration: Histogram
    events: Counter  # messages sent (client) or processed (server)
    active: Tally
    errors: Counter


def _duration(meter: OtelMeter, name: str, what: str) -> Histogram:
    return meter.create_histogram(
        name,
        unit="s",
        description=what,
        explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
    )


def _tally(meter: OtelMeter, observable: Any, name: str, unit: str, what: str) -> Tally:
    tally = Tally()
    observable(name, callbacks=[tally.observe], unit=unit, description=what)
    return tally


def client_side(meter: OtelMeter) -> Side:
    return Side(
        call_duration=_duration(meter, sc.RPC_CLIENT_DURATION, "Duration of outgoing calls."),
        event_duration=_duration(
            meter, sc.MESSAGING_CLIENT_DURATION, "Duration of an event's delivery to a group."
        ),
        events=meter.create_counter(
            sc.MESSAGING_SENT, unit="{message}", description="Event deliveries attempted."
        ),
        active=_tally(
            meter,
            meter.create_observable_up_down_counter,
            sc.CLIENT_ACTIVE,
            "{call}",
            "Outgoing calls and deliveries in flight.",
        ),
        errors=meter.create_counter(
            sc.CLIENT_ERRORS, unit="{error}", description="Outgoing calls that failed, by error."
        ),
    )


def server_side(meter: OtelMeter) -> Side:
    return Side(
        call_duration=_duration(meter, sc.RPC_SERVER_DURATION, "Duration of incoming calls."),
        event_duration=_duration(
            meter, sc.MESSAGING_PROCESS_DURATION, "Duration of a listener's handling of an event."
        ),
        events=meter.create_counter(
            sc.MESSAGING_CONSUMED, unit="{message}", description="Events handed to listeners."
        ),
        active=_tally(
            meter,
            meter.create_observable_up_down_counter,
            sc.SERVER_ACTIVE,
            "{call}",
            "Incoming calls and events in flight.",
        ),
        errors=meter.create_counter(
            sc.SERVER_ERRORS, unit="{error}", description="Incoming calls that failed, by error."
        ),
    )


# The transports count the bytes of every call (jesus.transport.traffic): read when the
# metrics are collected, by (side, direction).
_BYTES = (
    (sc.SERVER_REQUEST_SIZE, SERVER, False, "Bytes of requests received, decompressed."),
    (
        sc.SERVER_RESPONSE_SIZE,
        SERVER,
        True,
        "Bytes of answers sent (results, acks, items, errors).",
    ),
    (sc.CLIENT_REQUEST_SIZE, CLIENT, True, "Bytes of requests sent."),
    (sc.CLIENT_RESPONSE_SIZE, CLIENT, False, "Bytes of answers received (results, items)."),
)


def _attributes(meter: Meter) -> dict[str, Any]:
    service, _, method = meter.target.partition(".")
    return {
        sc.RPC_SYSTEM_NAME: sc.SYSTEM,
        sc.RPC_METHOD: f"{service}/{method}",
        sc.JESUS_CHANNEL: meter.channel,
    }


def _observe_bytes(side: str, sent: bool) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(meter.sent if sent else meter.received, _attributes(meter))
            for meter in TRAFFIC.meters()
            if meter.side == side
        ]

    return observe


def byte_counters(meter: OtelMeter) -> None:
    """The four counters of bytes, by channel and method, on both ends."""
    for name, side, sent, what in _BYTES:
        meter.create_observable_counter(
            name, callbacks=[_observe_bytes(side, sent)], unit="By", description=what
        )
