"""Hostile clients against a server in another process: its resident memory (RSS, read from
/proc) must stay within its configured limits plus a stated margin during the attack and come
back near where it was after it, and a well-behaved client on another connection must keep
getting answers throughout.

Each test starts `tests.hardening.server_process` on the backend under test (asyncio, trio),
takes a baseline once its probe client is answered, samples the server's RSS every 20 ms while
the attack runs and for a second after it, then takes the figure "after", and "after trimmed"
once the server gave back to the system what its C allocator keeps (SIGUSR1: gc.collect and
malloc_trim; the baseline is taken the same way). "After" is reported; "after trimmed" is
checked, as it is what the server still holds rather than what glibc caches for reuse (a
worker thread's arena keeps a freed 30 MB buffer, for instance). The raw attackers
are blocking sockets in this process that speak the wire protocol by hand (PROTOCOL.md); the
probe is a `jesus.Client` in a thread of its own, calling `hard.echo_<transport>` every 20 ms.
The figures go to stderr (`pytest -s`) and, one JSON line per test, to $JESUS_MEMORY_REPORT.

Margins: MARGIN (32 MiB) covers what is not the attack's payload: allocator slack, the worker
threads that decode heavy payloads (their stacks, their zstd contexts), socket read buffers,
the interpreter warming up code paths the probe never took. AFTER_MARGIN (24 MiB) is what may stay
once the attack is over and the allocator was trimmed: pymalloc arenas that a few live small
objects pin (a write buffer full of 18-byte PONGs is some 230,000 objects, and about 15 MB of
arenas stay mapped after it; the same 15 MB after three attacks in a row: reused, not leaked),
and caches the attack warmed (codec and decompression contexts).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import msgpack
import pytest
import zstandard

import jesus
from tests.hardening.memory import Figures, MiB, RssSampler, report, steady_rss
from tests.hardening.server_process import SERVICE, SLOW_SECONDS, ServerProcess

BACKENDS = ["asyncio", "trio"]
MARGIN = 32 * MiB
AFTER_MARGIN = 24 * MiB
PROBE_LATENCY_BOUND = 2.0  # seconds; generous, so that slow machines do not fail
MIN_ATTACK_SECONDS = 0.5  # the probe gets a few calls in even when the attack is quick
SETTLE_SECONDS = 1.0  # after the attack: calls end, the server notices closed connections

# Frame types and flags (PROTOCOL.md, Frames).
HELLO, PING, PONG, REQUEST, RESPONSE, ERROR = 0x01, 0x02, 0x03, 0x10, 0x11, 0x13
COMPRESSED = 0x01
RESPONSE_MODE = 2 << 4


# ---------------------------------------------------------------------- the probe


class Probe:
    """A `jesus.Client` calling `method` in a loop, in a thread with its own event loop; each
    call is recorded as (start, end, error or None), on time.monotonic()."""

    def __init__(self, registry: str, method: str, interval: float = 0.02) -> None:
        self.registry = registry
        self.method = method
        self.interval = interval
        self.calls: list[tuple[float, float, str | None]] = []
        self.crash: BaseException | None = None
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:
            self.crash = exc
            self._answered.set()

    async def _main(self) -> None:
        async with jesus.Client(self.registry) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                start = time.monotonic()
                error = None
                try:
                    got = await client.call(self.method, {"probe": i}, timeout=5)
                    if got != {"probe": i}:
                        error = f"wrong answer {got!r}"
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                self.calls.append((start, time.monotonic(), error))
                if error is None:
                    self._answered.set()
                await anyio.sleep(self.interval)

    def __enter__(self) -> Probe:
        self._thread.start()
        if not self._answered.wait(15) or self.crash is not None:
            self.__exit__()
            raise RuntimeError(f"the probe got no answer: {self.crash!r} {self.calls[-3:]}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def overlapping(self, start: float, end: float) -> list[tuple[float, float, str | None]]:
        return [call for call in list(self.calls) if call[0] < end and call[1] > start]

    def answered_after(self, moment: float, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(s >= moment and e is None for s, _, e in list(self.calls)):
                return True
            time.sleep(0.02)
        return False


# ---------------------------------------------------------------------- the harness


@contextmanager
def served(
    tmp_path: Path, backend: str, channel: str, limits: dict[str, Any]
) -> Iterator[tuple[ServerProcess, Probe]]:
    transport = channel.split("+", 1)[0]
    with (
        ServerProcess(backend, [channel], limits, tmp_path / "registry") as server,
        Probe(server.registry, f"{SERVICE}.echo_{transport}") as probe,
    ):
        if server.info["ignored_limits"]:
            print(f"[memory] limits unknown to the server: {server.info['ignored_limits']}")
        yield server, probe


def measure(
    name: str,
    server: ServerProcess,
    probe: Probe,
    attack: Callable[[], dict[str, Any]],
    peak_bound: int,
    after_bound: int = AFTER_MARGIN,
) -> Figures:
    """Run `attack` while sampling the server's RSS; report and check the figures that every
    test shares (memory bounds, the probe). Returns them for the test's own checks."""
    pid = server.pid
    time.sleep(0.2)  # the probe's connection is up, the server at rest
    server.trim()
    baseline = steady_rss(pid)
    with RssSampler(pid) as sampler:
        started = time.monotonic()
        try:
            outcome = attack()
        finally:
            elapsed = time.monotonic() - started
            time.sleep(max(0.0, MIN_ATTACK_SECONDS - elapsed))
            ended = time.monotonic()
            time.sleep(SETTLE_SECONDS)
    assert sampler.error is None, f"{sampler.error!r}\n{server.stderr_tail()}"
    after = steady_rss(pid)
    server.trim()
    after_trimmed = steady_rss(pid)
    # The probe calls one at a time: once a call begun after the attack is answered, every
    # call that overlapped the attack has ended and been recorded (a stuck one included).
    answered_after = probe.answered_after(ended)
    during = probe.overlapping(started, ended)
    figures = Figures(
        test=name,
        backend=server.backend,
        baseline=baseline,
        peak=sampler.peak,
        after=after,
        after_trimmed=after_trimmed,
        peak_bound=peak_bound,
        after_bound=after_bound,
        probe_calls=len(during),
        probe_errors=sum(1 for *_, error in during if error is not None),
        probe_max_latency=max((end - start for start, end, _ in during), default=0.0),
        attack_seconds=ended - started,
        samples=len(sampler.samples),
        outcome=outcome,
    )
    report(figures)
    assert figures.growth < peak_bound, figures.line()
    assert figures.held < after_bound, figures.line()
    errors = [error for *_, error in during if error is not None]
    assert during and not errors, f"probe during the attack: {errors[:3]}; {figures.line()}"
    assert figures.probe_max_latency < PROBE_LATENCY_BOUND, figures.line()
    assert answered_after, f"no probe answer after the attack; {figures.line()}"
    return figures


# ---------------------------------------------------------------------- raw clients


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack("!IBBI", len(payload), ftype, flags, sid) + payload


def envelope(method: str, corrid: str, data: bytes) -> bytes:
    """A REQUEST payload `[method, {"c": corrid}, data]`, `data` already msgpack-encoded."""
    head: bytes = msgpack.packb(method) + msgpack.packb({"c": corrid})
    return b"\x93" + head + data


class RawTcp:
    """A raw jesus connection on a blocking socket, past the handshake."""

    def __init__(
        self,
        address: tuple[str, int],
        compression: str = "zstd",
        receive_buffer: int | None = None,
        timeout: float = 10.0,
        wait_hello: bool = True,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buffer = bytearray()
        hello = {"protocol": "jesus", "version": 1, "codec": "msgpack"}
        self.sock.sendall(
            frame(HELLO, 0, 0, json.dumps(hello | {"compression": compression}).encode())
        )
        if wait_hello:  # a client that never reads does not wait for the server's HELLO
            ftype, *_ = self.read_frame()
            assert ftype == HELLO

    def read_frame(self, timeout: float = 10.0) -> tuple[int, int, int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 10:
                length, ftype, flags, sid = struct.unpack_from("!IBBI", self.buffer)
                if len(self.buffer) >= 10 + length:
                    payload = bytes(self.buffer[10 : 10 + length])
                    del self.buffer[: 10 + length]
                    return ftype, flags, sid, payload
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def answers(self, want: int, timeout: float = 15.0) -> dict[int, tuple[int, bytes]]:
        """The answers to `want` calls: stream id -> (frame type, payload inflated)."""
        deadline = time.monotonic() + timeout
        got: dict[int, tuple[int, bytes]] = {}
        while len(got) < want:
            ftype, flags, sid, payload = self.read_frame(deadline - time.monotonic())
            if flags & COMPRESSED:
                payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=MiB)
            if sid:
                got[sid] = (ftype, payload)
        return got

    def flood(
        self, data: bytes, send_timeout: float, phase_timeout: float = 10.0
    ) -> dict[str, Any]:
        """Send `data` in 1 MiB batches until it is all sent, or a send blocks for
        `send_timeout` (the server stopped reading), or `phase_timeout` passed."""
        return flood(self.sock, data, send_timeout, phase_timeout)

    def close(self) -> None:
        self.sock.close()


def flood(
    sock: socket.socket, data: bytes, send_timeout: float, phase_timeout: float = 10.0
) -> dict[str, Any]:
    view = memoryview(data)
    sent = 0
    blocked = False
    deadline = time.monotonic() + phase_timeout
    sock.settimeout(send_timeout)
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent : sent + MiB])
        except TimeoutError:
            blocked = True
            break
        except OSError as exc:  # the server closed the connection: it refused the flood
            return {"sent": sent, "blocked": False, "closed": type(exc).__name__}
    return {"sent": sent, "of": len(data), "blocked": blocked}


def error_code(payload: bytes) -> str:
    return str(json.loads(payload)["code"])


def codes(answers: dict[int, tuple[int, bytes]]) -> Counter[str]:
    return Counter(
        error_code(payload) if ftype == ERROR else f"frame {ftype:#x}"
        for ftype, payload in answers.values()
    )


# ---------------------------------------------------------------------- the attacks


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_a_tiny_frame_declaring_millions_of_maps(tmp_path: Path, backend: str) -> None:
    """~200 bytes of zstd that inflate to an envelope whose data is an array of 4 million
    empty maps: refused before the array is built (max_decoded_items)."""
    count = 4_000_000
    inflated = envelope(
        f"{SERVICE}.echo", "items-bomb", b"\xdd" + struct.pack(">I", count) + b"\x80" * count
    )
    payload = zstandard.ZstdCompressor().compress(inflated)
    assert len(payload) < 1000
    limits = {"max_decoded_items": 1_000_000}
    with served(tmp_path, backend, "tcp+msgpack+zstd", limits) as (server, probe):

        def attack() -> dict[str, Any]:
            conn = RawTcp(server.address("tcp"))
            try:
                conn.sock.sendall(frame(REQUEST, RESPONSE_MODE | COMPRESSED, 1, payload))
                ((ftype, answer),) = conn.answers(1).values()
            finally:
                conn.close()
            code = error_code(answer) if ftype == ERROR else f"frame {ftype:#x}"
            return {"wire_bytes": len(payload), "inflated": len(inflated), "answer": code}

        # Bound: the inflated payload (alive while it is decoded) plus the margin; building
        # the 4 million maps would take some 300 MB.
        figures = measure("tcp_decoded_items_bomb", server, probe, attack, len(inflated) + MARGIN)
    assert figures.outcome["answer"] in ("TOO_LARGE", "INVALID_REQUEST")


def datagram(message_id: int, payload: bytes, compression: str = "zstd") -> bytes:
    """A REQUEST datagram (PROTOCOL.md, Datagram transport), mode response, msgpack."""
    flags = RESPONSE_MODE | (COMPRESSED if compression != "none" else 0)
    head = struct.pack("!2sBBBBQ", b"JS", 1, REQUEST, flags, 0, message_id)
    return head + b"\x07msgpack" + bytes([len(compression)]) + compression.encode() + payload


def parse_datagram(data: bytes) -> tuple[int, int, int, bytes]:
    """(type, flags, message id, payload) of an answer datagram."""
    magic, _version, dtype, flags, _, message_id = struct.unpack_from("!2sBBBBQ", data)
    assert magic == b"JS"
    n = data[14]
    m = data[15 + n]
    compression = data[16 + n : 16 + n + m].decode()
    payload = data[16 + n + m :]
    if flags & COMPRESSED and compression == "zstd":
        payload = zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 20)
    return dtype, flags, message_id, payload


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_a_datagram_declaring_30_million_nils(tmp_path: Path, backend: str) -> None:
    """One datagram of about 1 KB inflating to an array of 30 million nils (240 MB of list
    once built): refused before the array is built."""
    count = 30_000_000
    inflated = envelope(
        f"{SERVICE}.echo", "nil-bomb", b"\xdd" + struct.pack(">I", count) + b"\xc0" * count
    )
    message = datagram(0x5EED, zstandard.ZstdCompressor().compress(inflated))
    assert len(message) < 8192
    limits = {"max_decoded_items": 1_000_000}
    with served(tmp_path, backend, "udp+msgpack+zstd", limits) as (server, probe):

        def attack() -> dict[str, Any]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(10)
                sock.sendto(message, server.address("udp"))
                while True:  # an ERROR is what we expect; a RESPONSE would be worse
                    dtype, _, message_id, payload = parse_datagram(sock.recv(65536))
                    if message_id == 0x5EED:
                        break
            code = error_code(payload) if dtype == ERROR else f"type {dtype:#x}"
            return {"wire_bytes": len(message), "inflated": len(inflated), "answer": code}

        # Bound: the inflated payload (alive while it is decoded) plus the margin.
        figures = measure("udp_nil_bomb", server, probe, attack, len(inflated) + MARGIN)
    assert figures.outcome["answer"] in ("TOO_LARGE", "INVALID_REQUEST")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_large_requests_in_flight_are_bounded_by_the_budget(
    tmp_path: Path, backend: str
) -> None:
    """Ten requests of 60 MB each (zstd of zeros, about 2 KB on the wire) to a method that
    holds them for 2 s, all in flight on one connection: past max_inflight_bytes they get
    UNAVAILABLE instead of 600 MB being held."""
    size = 60_000_000
    budget = 64 * MiB
    inflated = envelope(
        f"{SERVICE}.slow_size", "big", b"\xc6" + struct.pack(">I", size) + bytes(size)
    )
    payload = zstandard.ZstdCompressor().compress(inflated)
    del inflated
    limits = {"max_inflight_bytes": budget, "max_server_inflight_bytes": 256 * MiB}
    calls = 10
    with served(tmp_path, backend, "tcp+msgpack+zstd", limits) as (server, probe):

        def attack() -> dict[str, Any]:
            conn = RawTcp(server.address("tcp"))
            try:
                conn.sock.sendall(
                    b"".join(
                        frame(REQUEST, RESPONSE_MODE | COMPRESSED, sid, payload)
                        for sid in range(1, calls + 1)
                    )
                )
                answers = conn.answers(calls, timeout=calls * 3 + SLOW_SECONDS)
            finally:
                conn.close()
            results = [msgpack.unpackb(p) for t, p in answers.values() if t == RESPONSE]
            return {
                "wire_bytes": len(payload),
                "answers": dict(codes(answers)),
                "results": results,
            }

        # Bound: what the budget lets calls hold (64 MiB), plus the one request being
        # decoded meanwhile, twice (its inflated payload and the value decoded from it are
        # both alive until decoding ends), plus the margin: about 210 MiB, where holding
        # the ten would take 600 MB.
        figures = measure("tcp_inflight_budget", server, probe, attack, budget + 2 * size + MARGIN)
    answers = figures.outcome["answers"]
    assert answers.get("frame 0x11", 0) >= 1, answers  # at least one call was taken...
    assert figures.outcome["results"] == [size] * answers["frame 0x11"]
    # ...and every other one refused as the server being busy, for a retry later
    assert answers.get("frame 0x11", 0) + answers.get("UNAVAILABLE", 0) == calls, answers


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_a_client_that_never_reads_stops_being_read(tmp_path: Path, backend: str) -> None:
    """A client that never reads (and keeps its receive window small): a million PINGs, then
    300,000 calls to an unknown method, then 100 echo calls of 1 MB, each phase on a connection
    of its own, sent until a send blocks for a second. The server must stop reading once write_buffer_size of answers
    wait, so what it holds stays a few write buffers, whatever the client sends."""
    write_buffer = 4 * MiB
    pings = frame(PING, 0, 0, b"12345678") * 1_000_000
    nope = envelope(f"{SERVICE}.nope", "n", b"\xc0")  # encoded once: half a second less
    unknown = b"".join(frame(REQUEST, RESPONSE_MODE, sid, nope) for sid in range(1, 300_001))
    blob = envelope(f"{SERVICE}.echo", "e", msgpack.packb(os.urandom(MiB)))
    echo = b"".join(frame(REQUEST, RESPONSE_MODE, sid, blob) for sid in range(300_001, 300_101))
    limits = {"write_buffer_size": write_buffer}
    with served(tmp_path, backend, "tcp+msgpack+zstd", limits) as (server, probe):

        def attack() -> dict[str, Any]:
            phases = {}
            # Each phase on a connection of its own: the first would block the others.
            for name, data in (("pings", pings), ("unknown", unknown), ("echo", echo)):
                conn = RawTcp(
                    server.address("tcp"),
                    compression="none",
                    receive_buffer=64 * 1024,
                    wait_hello=False,
                )
                try:
                    phases[name] = conn.flood(data, send_timeout=1.0)
                    time.sleep(0.3)  # let the server do its worst with what it read
                finally:
                    conn.close()
            return phases

        # Bound: a few write buffers (the answers queued, the one being written, the frames
        # of one read being answered) plus the margin; queueing every answer would take
        # ~18 MB of PONGs, ~35 MB of errors and 100 MB of echoes, and more in objects.
        figures = measure("tcp_never_reads", server, probe, attack, 4 * write_buffer + MARGIN)
    assert all(phase["sent"] > 0 for phase in figures.outcome.values())


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_pipelined_requests_without_reading(tmp_path: Path, backend: str) -> None:
    """3,000 pipelined POSTs of 64 KB each on one connection that never reads: the server
    answers one request at a time and stops reading while answers wait, so neither the
    requests (192 MB) nor their answers pile up in it."""
    write_buffer = 4 * MiB
    body = b'"' + b"x" * (64 * 1024 - 2) + b'"'
    per_batch = 15  # about 1 MiB
    batch = post(f"/{SERVICE}/echo", body) * per_batch
    requests = 3_000
    limits = {"write_buffer_size": write_buffer}
    with served(tmp_path, backend, "http+json", limits) as (server, probe):

        def attack() -> dict[str, Any]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(10)
            sock.connect(server.address("http"))
            sent = {"sent": 0, "requests": 0, "blocked": False}
            try:
                deadline = time.monotonic() + 15
                while sent["requests"] < requests and time.monotonic() < deadline:
                    step = flood(sock, batch, send_timeout=1.0, phase_timeout=5.0)
                    sent["sent"] += step["sent"]
                    if step["sent"] < len(batch):
                        sent["blocked"] = bool(step.get("blocked"))
                        break
                    sent["requests"] += per_batch
                time.sleep(0.3)
            finally:
                sock.close()
            return sent

        # Bound: as for tcp, a few write buffers plus the margin; reading every request
        # would hold 192 MB, answering them all another 192 MB.
        figures = measure(
            "http_pipelined_no_reads", server, probe, attack, 4 * write_buffer + MARGIN
        )
    assert figures.outcome["sent"] > 0
