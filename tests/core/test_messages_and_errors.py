from __future__ import annotations

import pytest

import jesus
from jesus.errors import (
    CallError,
    DeadlineExceeded,
    InvalidRequest,
    RemoteFailure,
    Unavailable,
    error_from_wire,
)
from jesus.messages import Meta, ResponseMode, new_corrid


def test_meta_round_trips_through_the_compact_wire_form() -> None:
    meta = Meta(
        userid="u1",
        sender="orders",
        req_out_ts=1.5,
        deadline_ms=250,
        traceparent="00-abc-def-01",
        channel="tcp+msgpack+none",
        extra={"k": 1},
    )
    wire = meta.to_wire()
    assert wire == {
        "c": meta.corrid,
        "u": "u1",
        "f": "orders",
        "o": 1.5,
        "d": 250,
        "t": "00-abc-def-01",
        "h": "tcp+msgpack+none",
        "x": {"k": 1},
    }
    back = Meta.from_wire(wire, ResponseMode.ACK)
    assert (back.corrid, back.userid, back.sender, back.deadline_ms, back.mode) == (
        meta.corrid,
        "u1",
        "orders",
        250,
        ResponseMode.ACK,
    )
    assert back.req_in_ts is not None
    assert back.as_dict()["from"] == "orders"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {},
        {"c": ""},
        {"c": 1},
        {"c": "x" * 200},
        {"c": "a", "d": "soon"},
        {"c": "a", "d": -1},
    ],
)
def test_malformed_meta_is_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        Meta.from_wire(raw, ResponseMode.RESPONSE)


def test_unknown_meta_keys_are_ignored_for_forward_compatibility() -> None:
    assert Meta.from_wire({"c": "a", "zz": 1}, ResponseMode.RESPONSE).corrid == "a"


def test_corrids_are_unique() -> None:
    assert len({new_corrid() for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in vars(jesus).values()
        if isinstance(c, type) and issubclass(c, CallError) and c is not CallError
    ],
)
def test_every_call_error_travels_and_comes_back_typed(cls: type[CallError]) -> None:
    err = cls("it went wrong", corrid="c-1", details=["x"])
    back = error_from_wire(err.to_wire())
    expected = Unavailable if cls is jesus.ServiceNotFound else cls
    assert type(back) is expected
    assert (back.message, back.corrid, back.details, back.remote) == (
        "it went wrong",
        "c-1",
        ["x"],
        True,
    )
    assert "c-1" in str(back) and "(remote)" in str(back)


def test_unknown_error_codes_become_remote_failures() -> None:
    assert type(error_from_wire({"code": "NEW_THING", "message": "m"})) is RemoteFailure
    assert type(error_from_wire("garbage", corrid="c")) is RemoteFailure


def test_deadline_exceeded_is_a_timeout_error() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert Unavailable.retryable and not InvalidRequest.retryable


def test_response_mode_wire_values() -> None:
    assert [m.wire for m in ResponseMode] == [0, 1, 2, 3]
    assert ResponseMode("noResponse") is ResponseMode.NO_RESPONSE


def test_what_a_caller_may_do_next_is_a_property_of_the_error_class() -> None:
    from jesus.errors import ConnectionLost, HandshakeRefused

    # (retryable, may_have_run) of every error a call can end with
    table = {
        jesus.Unavailable: (True, False),  # refused before it ran, or unreachable
        jesus.ServiceNotFound: (True, False),
        jesus.ResourceExhausted: (True, False),  # the method's bulkhead was full
        HandshakeRefused: (False, False),  # TLS refused: the same again would fail the same
        ConnectionLost: (True, True),  # sent, then the connection broke
        jesus.DeadlineExceeded: (False, True),  # the one deadline is spent
        jesus.RemoteFailure: (False, True),  # the handler raised
        jesus.InvalidResponse: (False, True),  # the handler ran, its answer was wrong
        jesus.Cancelled: (False, True),
        jesus.InvalidRequest: (False, False),
        jesus.UnknownMethod: (False, False),
        jesus.WrongChannel: (False, False),
        jesus.PermissionDenied: (False, False),
        jesus.SealRefused: (False, False),
        jesus.TooLarge: (False, False),
        jesus.BadFrame: (False, False),
    }
    for cls, (retryable, may_have_run) in table.items():
        assert (cls.retryable, cls.may_have_run) == (retryable, may_have_run), cls
        # Tried again only when transient, and either idempotent or sure not to have run.
        assert cls.safe_to_retry(False) == (retryable and not may_have_run), cls
        assert cls.safe_to_retry(True) == retryable, cls
    assert issubclass(ConnectionLost, jesus.Unavailable)
    assert issubclass(jesus.ResourceExhausted, jesus.Unavailable)


def test_resource_exhausted_carries_its_retry_after_hint_over_the_wire() -> None:
    sent = jesus.ResourceExhausted("full", details={"retry_after_ms": 250})
    back = error_from_wire(sent.to_wire())
    assert type(back) is jesus.ResourceExhausted and back.remote
    assert back.retry_after == 0.25
    # A peer's hint is bounded and typed: nonsense is no hint, a huge one is a minute.
    assert error_from_wire({"code": "RESOURCE_EXHAUSTED", "message": "m"}).retry_after == 0.0
    odd = {"code": "RESOURCE_EXHAUSTED", "message": "m", "details": {"retry_after_ms": "9"}}
    assert error_from_wire(odd).retry_after == 0.0
    huge = {"code": "RESOURCE_EXHAUSTED", "message": "m", "details": {"retry_after_ms": 1e12}}
    assert error_from_wire(huge).retry_after == 60.0


def test_map_exceptions_translates_library_errors_at_a_boundary() -> None:
    import anyio

    from jesus.errors import map_exceptions
    from jesus.transport import connect_errors

    refused = pytest.raises(jesus.Unavailable, match=r"cannot connect to tcp://x:1: refused")
    with refused as info, connect_errors("tcp://x:1"):
        raise ConnectionRefusedError("refused")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    with pytest.raises(jesus.Unavailable, match="BrokenResourceError"), connect_errors("x"):
        raise anyio.BrokenResourceError
    store = map_exceptions({(KeyError, OSError): jesus.RegistryError}, "store")
    with pytest.raises(jesus.RegistryError, match="store: boom"), store:
        raise OSError("boom")
    # Not in the mapping, or jesus's own: it passes unchanged.
    with pytest.raises(ValueError), map_exceptions({OSError: jesus.RegistryError}, "store"):
        raise ValueError("mine")
    with pytest.raises(jesus.TooLarge), map_exceptions({Exception: jesus.RegistryError}, "s"):
        raise jesus.TooLarge("big")


@pytest.mark.parametrize("bad", [-1, 2**32, 10**400, "5", 1.5, True])
def test_a_deadline_outside_its_range_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"meta\.d"):
        Meta.from_wire({"c": "x", "d": bad}, ResponseMode.RESPONSE)
    assert Meta.from_wire({"c": "x", "d": 2**32 - 1}, ResponseMode.RESPONSE).deadline_ms
