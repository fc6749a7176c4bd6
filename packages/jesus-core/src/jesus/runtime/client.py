"""Calling services: resolve `service.method` in the registry, check the request against the
schema the provider published, send it over the method's channel, check the answer."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from jesus import event_names
from jesus.channel import Channel, resolve_channel
from jesus.errors import (
    CallError,
    ChannelNotInstalled,
    ConfigurationError,
    DeadlineExceeded,
    EventNotDelivered,
    InvalidRequest,
    InvalidResponse,
    ResourceExhausted,
    SealRefused,
    ServiceNotFound,
    TooLarge,
    Unavailable,
    UnknownMethod,
    explained,
)
from jesus.limits import Limits
from jesus.messages import Meta, ResponseMode, new_corrid
from jesus.middleware import CallInfo, chain
from jesus.payload import decode_payload
from jesus.plugins import Catalog, default_catalog
from jesus.registry.base import InstanceRecord, MethodRecord, channels_of
from jesus.registry.open import open_registry
from jesus.registry.resolver import Resolver
from jesus.routing.compatible import CompatibilityFilter
from jesus.routing.retries import NO_RETRY, Retry, RetryBudget
from jesus.routing.strategies import PreferLocal, Strategy, make_strategy
from jesus.routing.versions import VersionRange
from jesus.runtime.context import current_meta, remaining_seconds
from jesus.sealing.envelope import CODECS, MAX_SEALED, strength
from jesus.sealing.seal import SealedCall, Sealer, open_error, to_wire
from jesus.security.credentials import Credentials
from jesus.transport import OutgoingCall, TransportClient, TransportOptions
from jesus.transport.futures import clock_factory, deadline_factory, effective_deadline, now
from jesus.transport.keys import TransportKeys
from jesus.validation.base import schema_error
from jesus.validation.cache import ValidatorCache

log = logging.getLogger("jesus.client")


@dataclass(slots=True)
class Candidate:
    """One instance able to take a call: where it listens on the method's channel, and the
    validators of its published schemas."""

    record: InstanceRecord
    method: MethodRecord
    channel: Channel
    endpoint: str
    transport: TransportClient
    request_check: Any = None
    response_check: Any = None


class Route(list[Candidate]):
    """The candidates of one call in the order to try them, with the callee's retry rules.
    `uniform`: they all publish the same request schema (one check does for all)."""

    __slots__ = ("idempotent", "retry", "target", "uniform")

    def __init__(
        self, candidates: list[Candidate], target: str, retry: Retry, uniform: bool
    ) -> None:
        super().__init__(candidates)
        self.target = target
        self.retry = retry
        self.idempotent = candidates[0].method.idempotent
        self.uniform = uniform


class TargetPlan:
    """What a call target resolves to, worked out once: the service and method, the version
    range and declared use that filter its instances, and the candidates while the resolver
    hands out the same records (a single one: its route, ready)."""

    __slots__ = (
        "candidates",
        "method",
        "name",
        "pinned",
        "records",
        "service",
        "single",
        "uniform",
        "use",
    )

    def __init__(
        self, service: str, method: str, pinned: str | None, use: dict[str, Any] | None
    ) -> None:
        self.service = service
        self.method = method
        self.name = f"{service}.{method}"
        self.pinned = pinned
        self.use = use
        self.records: list[InstanceRecord] | None = None
        self.candidates: list[Candidate] = []
        self.uniform = True
        self.single: Route | None = None


# Event names whose listener groups a client keeps worked out (see Client._event_groups).
MAX_EVENT_PLANS = 1024
# (service, method, version range, use) routes a client keeps worked out.
MAX_PLANS = 4096


def _checked_seal(seal: str | None) -> str | None:
    try:
        strength(seal)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return seal


def _stronger(a: str | None, b: str | None) -> str | None:
    return a if strength(a) >= strength(b) else b


def _name_deadline(exc: DeadlineExceeded, target: str, seconds: float | None) -> None:
    """A deadline that passed here says which call it was."""
    if not exc.remote:
        exc.message = f"{target} did not answer within {seconds or 0:.3f}s"
        exc.args = (exc.message,)


def _bad_item(target: str, check: Any, item: Any, meta: Meta) -> CallError:
    return schema_error(
        InvalidResponse,
        f"{target} streamed an item that does not match its schema",
        check,
        item,
        meta.corrid,
    )


def split_target(target: str) -> tuple[str, str]:
    service, method, _ = parse_target(target)
    return service, method


def parse_target(target: str) -> tuple[str, str, str | None]:
    """`service.method`, or `service@RANGE.method` (`calc@^1.2.add`): service, method, range."""
    if "@" in target:
        service, _, rest = target.partition("@")
        pinned, sep, method = rest.rpartition(".")
    else:
        pinned = None
        service, sep, method = target.partition(".")
    if not sep or not service or not method or "." in service or pinned == "":
        raise ConfigurationError(
            f"call target {target!r} must be 'service.method' (or 'service@VERSION.method')"
        )
    return service, method, pinned


def _retry_after(error: CallError) -> float:
    return error.retry_after if isinstance(error, ResourceExhausted) else 0.0


class Client:
    """Calls services found in a registry.

        async with jesus.Client() as client:
            user = await client.call("users.get", {"id": 1})

    `timeout` (seconds) is the default deadline of a call; an enclosing `anyio.fail_after`
    or the deadline of the call being handled, whichever is nearest, wins. The deadline
    travels to the server, so a nested call never outlives its parent. `tls`
    (jesus.Credentials) trusts its CA and shows its certificate to mutual-TLS servers (or
    give an `ssl_context`), and signs sealed calls; `sealing` signs them instead, for a
    client that seals without TLS.
    """

    def __init__(
        self,
        registry: str | None = None,
        *,
        name: str | None = None,
        userid: str | None = None,
        timeout: float | None = 30.0,
        validate: bool = True,
        limits: Limits | None = None,
        ssl_context: Any = None,
        catalog: Catalog | None = None,
        resolver: Resolver | None = None,
        tls: Credentials | None = None,
        sealing: Credentials | None = None,
        strategy: str | Strategy | None = None,
        versions: Mapping[str, str] | None = None,
        uses: Mapping[str, Mapping[str, Any]] | None = None,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        if tls is not None and ssl_context is None:
            ssl_context = tls.client_context()
        self._sealing = sealing or tls  # the certificate that signs this client's seals
        self._sealer: Sealer | None = None  # made at the first sealed call
        self.catalog = catalog or default_catalog()
        self.name = name
        self.userid = userid
        self.timeout = timeout
        self.validate = validate
        self.options = TransportOptions(
            limits=limits or Limits(),
            ssl_context=ssl_context,
            codecs=self.catalog.codecs,
            compressions=self.catalog.compressions,
            keys=TransportKeys.of(self._sealing),
        )
        self._owns_resolver = resolver is None
        self.resolver = resolver or Resolver(open_registry(registry, self.catalog))
        self.validators = ValidatorCache(self.catalog.validators)
        if strategy is None:
            here = self.resolver.prefer_host
            self.strategy: Strategy = (
                make_strategy("round_robin") if here is None else PreferLocal(here)
            )
        else:
            self.strategy = make_strategy(strategy, self.catalog.strategies)
        self.versions = {name: VersionRange.parse(text) for name, text in (versions or {}).items()}
        self._ranges: dict[str, VersionRange] = {}
        self._strategies: dict[str, Strategy] = {}
        self.retry_budget = retry_budget or RetryBudget()
        self._uses: dict[str | None, dict[str, Any]] = {}
        self._compatible = CompatibilityFilter()
        self._transports: dict[str, TransportClient] = {}
        self._channels: dict[str, Channel] = {}
        self._plans: dict[Any, TargetPlan] = {}
        # The loop's clock and scope-deadline reader once entered (__aenter__).
        self._clock: Callable[[], float] = now
        self._scopes_deadline: Callable[[], float] = effective_deadline
        if uses:
            self.declare_uses(name, uses)
        self._send = chain(self.catalog.middleware, "client", self._send_innermost)
        self._open_stream = chain(self.catalog.middleware, "client", self._stream_innermost)
        self._deliver = chain(self.catalog.middleware, "client", self._deliver_innermost)
        self._group_turns: dict[str, int] = {}
        self._event_plans: dict[
            str,
            tuple[list[InstanceRecord], list[tuple[str, str, list[tuple[InstanceRecord, str]]]]],
        ] = {}
        # Events not delivered, per listener group (noResponse emits only log and count).
        self.event_failures: Counter[str] = Counter()
        self._tg: TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()

    def declare_uses(self, sender: str | None, uses: Mapping[str, Mapping[str, Any]]) -> None:
        """What calls made as `sender` expect of each method ({"billing.charge": {"request":
        schema, "response": schema}}, as `Service.use` records it): they go only to instances
        whose published schemas fit."""
        for target in uses:
            split_target(target)
        self._uses[sender] = {target: dict(use) for target, use in uses.items()}
        self._plans.clear()

    def use_sealing(self, credentials: Credentials) -> None:
        """Seal further calls with these credentials (a renewed certificate)."""
        self._sealing = credentials
        self._sealer = None

    async def __aenter__(self) -> Client:
        self._stack = contextlib.AsyncExitStack()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self.resolver.bind(self._tg)  # its background refreshes live as long as the client
        # This loop's, bound once (a look-up of the loop is a getpid on Python 3.11).
        self._clock = clock_factory()
        self._scopes_deadline = deadline_factory()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.resolver.unbind(self._tg)
        transports, self._transports = self._transports, {}
        self._plans.clear()  # they hold the transport clients closed below
        with anyio.CancelScope(shield=True):
            for client in transports.values():
                await client.aclose()
            if self._owns_resolver:
                await self.resolver.backend.aclose()
        if self._tg is not None:
            # The task group must exit in the scope it was entered in, not inside the shield.
            self._tg.cancel_scope.cancel()
            self._tg = None
            await self._stack.aclose()

    # ------------------------------------------------------------------ public API

    async def call(
        self,
        target: str,
        data: Any = None,
        *,
        mode: ResponseMode | str | None = None,
        timeout: float | None = None,
        userid: str | None = None,
        sender: str | None = None,
        seal: str | None = None,
        version: str | None = None,
        strategy: str | Strategy | None = None,
    ) -> Any:
        """Call a method in its declared mode, or in `mode` (any but stream): the result for
        `response`, None once the receiver accepted the message for `ack`, None at once for
        `noResponse`. `sender` is the name the call is made as (a Service's own calls use its
        name). `seal` ("sign", "encrypt") is the least protection this call needs, whatever
        the registry says of the method: a registry that lies cannot make it go out in clear.
        `version` pins the service to a range (`"^1.2"`, as `calc@^1.2.add` does) and
        `strategy` overrides the client's for this call."""
        # The whole call path in this one coroutine (no forwarding layer): every await of
        # the call resumes through each coroutine between it and the transport.
        forced = None if mode is None else ResponseMode(mode)
        plan = self._plan(target, sender, version)
        records = self.resolver.fresh(plan.service)  # known: no coroutine to look it up
        if records is None:
            records = await self.resolver.instances(plan.service)
        route = self._arranged(plan, records, strategy)
        method_rec, channel = route[0].method, route[0].channel
        mode = forced or method_rec.mode
        if mode is ResponseMode.STREAM:
            raise InvalidRequest(f"{target} is a stream method: use Client.stream()")
        seconds = self._seconds(timeout, method_rec)
        meta = self._meta(mode, channel, seconds, userid, sender)
        meta.seal = _checked_seal(seal)  # the least protection asked for; see _outgoing
        route = self._fitting(route, data, meta)
        if route.retry.attempts > 1:
            meta.retries = route.retry.attempts
        service, _, method = route.target.partition(".")
        info = CallInfo(service, method, data, meta, mode, channel.name, route)
        try:
            return await self._send(info)
        except DeadlineExceeded as exc:
            _name_deadline(exc, target, seconds)
            raise

    async def notify(
        self,
        target: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        userid: str | None = None,
        sender: str | None = None,
        seal: str | None = None,
        version: str | None = None,
        strategy: str | Strategy | None = None,
    ) -> None:
        """Fire and forget (noResponse), whatever mode the method declares."""
        await self.call(
            target,
            data,
            mode=ResponseMode.NO_RESPONSE,
            timeout=timeout,
            userid=userid,
            sender=sender,
            seal=seal,
            version=version,
            strategy=strategy,
        )

    async def stream(
        self,
        target: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        userid: str | None = None,
        sender: str | None = None,
        seal: str | None = None,
        version: str | None = None,
        strategy: str | Strategy | None = None,
    ) -> AsyncIterator[Any]:
        """Iterate a stream method's items; breaking out cancels the stream at the server."""
        started = anyio.current_time()
        route = await self._route(target, sender, version, strategy)
        first = route[0]
        if first.method.mode is not ResponseMode.STREAM:
            raise InvalidRequest(f"{target} is declared {first.method.mode.value!r}, not 'stream'")
        seconds = self._seconds(timeout, first.method)
        meta = self._meta(ResponseMode.STREAM, first.channel, seconds, userid, sender)
        meta.seal = _checked_seal(seal)
        route = self._fitting(route, data, meta)
        first = route[0]
        check = first.response_check
        service, _, method = route.target.partition(".")
        info = CallInfo(service, method, data, meta, ResponseMode.STREAM, first.channel.name, route)
        info.deadline = None if seconds is None else started + seconds
        items = await self._open_stream(info)
        # No cancel scope may span a yield (the consumer runs between items), so the deadline
        # is applied to each wait for the next item, unless the transport ends a stream at
        # its deadline itself (a scope per item costs more than the item).
        own_deadline = getattr(first.transport, "stream_deadlines", False)
        try:
            if own_deadline:
                try:
                    async for item in items:
                        if check is not None and not check.is_valid(item):
                            raise _bad_item(target, check, item, meta)
                        yield item
                except DeadlineExceeded as exc:
                    _name_deadline(exc, target, seconds)
                    raise
                return
            while True:
                with self._deadline(seconds, target, meta, started):
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        return
                    except DeadlineExceeded as exc:
                        _name_deadline(exc, target, seconds)
                        raise
                if check is not None and not check.is_valid(item):
                    raise _bad_item(target, check, item, meta)
                yield item
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        mode: ResponseMode | str = ResponseMode.NO_RESPONSE,
        broadcast: bool = False,
        schema: Any = None,
        retries: int = 2,
        timeout: float | None = None,
        userid: str | None = None,
        sender: str | None = None,
        seal: str | None = None,
    ) -> list[str]:
        """Deliver `event` to every listener group: one live instance of each (spread over
        them), or every instance with `broadcast=True`, over the channel each listener chose.
        Sealed listeners get it sealed to their instance; `seal` seals it at least so for all.

        `mode="noResponse"` sends and returns; `mode="ack"` returns once every group has
        acknowledged, trying other instances of a group up to `retries` times, and raises
        EventNotDelivered naming the groups that did not. `schema` (the emitter's declaration)
        checks the data first. Returns the groups the event went to.
        """
        rmode = ResponseMode(mode)
        if not event_names.valid_event(event):
            raise ConfigurationError(f"event name {event!r} is not valid")
        if rmode not in (ResponseMode.NO_RESPONSE, ResponseMode.ACK):
            raise ConfigurationError("an event is emitted as noResponse or ack")
        _checked_seal(seal)
        if schema is not None and self.validate:
            check = self.validators.get(schema)
            if check is not None and not check.is_valid(data):
                raise schema_error(
                    InvalidRequest, f"event {event} does not match its schema", check, data, None
                )
        seconds = remaining_seconds(
            timeout if timeout is not None else self.timeout, self._clock, self._scopes_deadline
        )
        parent = current_meta.get()
        corrid = parent.corrid if parent is not None else new_corrid()  # one for every group
        deliveries: list[tuple[str, list[tuple[InstanceRecord, str]]]] = []
        for group, pattern, members in self._event_groups(
            event, await self.resolver.listeners(event)
        ):
            if broadcast:
                deliveries += [(group, [member]) for member in members]
            else:
                key = f"{group}/{pattern}"
                turn = self._group_turns.get(key)
                if turn is None:  # from a random start: short-lived emitters spread too
                    turn = random.randrange(1 << 30)
                    if len(self._group_turns) >= MAX_EVENT_PLANS:
                        self._group_turns.clear()
                self._group_turns[key] = turn + 1
                start = turn % len(members)
                turned = members[start:] + members[:start]
                health = self.resolver.health
                if len(turned) > 1 and any(health.is_ejected(r.instance_id) for r, _ in turned):
                    turned.sort(key=lambda m: health.is_ejected(m[0].instance_id))
                deliveries.append((group, turned))
        failures: dict[str, Exception] = {}
        delivered: list[str] = []

        async def deliver(group: str, candidates: list[tuple[InstanceRecord, str]]) -> None:
            last: Exception | None = None
            for record, pattern in candidates[: retries + 1]:
                try:
                    channel = self._listener_channel(record, pattern)
                    meta = self._meta(rmode, channel, seconds, userid, sender)
                    meta.corrid = corrid
                    meta.event = event
                    meta.seal = seal
                    info = CallInfo(
                        record.service,
                        event_names.listener_method(pattern),
                        data,
                        meta,
                        rmode,
                        channel.name,
                        (record, pattern, channel),
                        group=group,
                    )
                    await self._deliver(info)
                except (CallError, ConfigurationError) as exc:
                    last = exc
                    if isinstance(exc, CallError) and not exc.safe_to_retry(False):
                        break  # refused (another instance would too), or it may have run
                    continue
                delivered.append(group)
                return
            failures[group] = last or Unavailable("no instance to deliver to")
            self.event_failures[group] += 1
            log.warning(
                "event %s not delivered to group %s: %s", event, group, explained(failures[group])
            )

        if rmode is ResponseMode.ACK:
            async with anyio.create_task_group() as tg:
                for group, candidates in deliveries:
                    tg.start_soon(deliver, group, candidates)
            if failures:
                raise EventNotDelivered(event, failures, sorted(delivered))
        else:
            for group, candidates in deliveries:
                await deliver(group, candidates)
        return sorted(set(delivered))

    def _event_groups(
        self, event: str, listeners: list[InstanceRecord]
    ) -> list[tuple[str, str, list[tuple[InstanceRecord, str]]]]:
        """The deliveries of `event`: (group, listener pattern, its instances), one per pair.
        Instances of a group share the load of each of their listeners; two listeners of one
        service both get a matching event. `listeners` are the instances the resolver found
        for this event; the plan is kept while it hands out the same list (until its cache
        refreshes), so a warm emit costs what its own listeners cost."""
        cached = self._event_plans.get(event)
        if cached is not None and cached[0] is listeners:
            return cached[1]
        groups: dict[tuple[str, str], list[tuple[InstanceRecord, str]]] = {}
        for record in listeners:
            for pattern, spec in record.listens.items():
                if event_names.matches(pattern, event):
                    key = (str(spec.get("group") or record.service), pattern)
                    groups.setdefault(key, []).append((record, pattern))
        plan = [(group, pattern, members) for (group, pattern), members in sorted(groups.items())]
        if len(self._event_plans) >= MAX_EVENT_PLANS:
            self._event_plans.clear()  # event names are the caller's: keep the memory bounded
        self._event_plans[event] = (listeners, plan)
        return plan

    async def _deliver_innermost(self, info: CallInfo) -> Any:
        record, pattern, channel = info.route
        spec = record.listens[pattern]
        endpoint = record.endpoints[channel.spec.transport]  # _listener_channel found it
        if self.validate:
            check = self.validators.get(spec.get("schema", True))
            if check is not None and not check.is_valid(info.data):
                raise schema_error(
                    InvalidRequest,
                    f"event {info.meta.event} does not match the schema of {record.service}'s "
                    f"listener {pattern}",
                    check,
                    info.data,
                    info.meta.corrid,
                )
        call, sealed = self._outgoing(info, channel, endpoint, record, spec.get("seal"))
        try:
            try:
                return await self._transport(channel).request(call)
            except CallError as exc:
                raise exc if sealed is None else open_error(sealed, exc) from None
        except Unavailable as exc:
            if not exc.remote and not exc.may_have_run:
                self.resolver.mark_failed(record)
            raise

    # ------------------------------------------------------------------ internals

    def _meta(
        self,
        mode: ResponseMode,
        channel: Channel,
        seconds: float | None,
        userid: str | None,
        sender: str | None = None,
    ) -> Meta:
        parent = current_meta.get()
        meta = Meta(
            mode=mode,
            sender=sender or self.name,
            userid=userid or (parent.userid if parent else None) or self.userid,
            req_out_ts=time.time(),
            channel=channel.name,
            deadline_ms=None if seconds is None else max(0, int(seconds * 1000)),
        )
        if parent is not None:
            meta.corrid = parent.corrid
            meta.traceparent = parent.traceparent
        return meta

    @contextlib.contextmanager
    def _deadline(
        self, seconds: float | None, target: str, meta: Meta, started: float | None = None
    ) -> Any:
        if seconds is None:
            yield
            return
        left = seconds if started is None else seconds - (anyio.current_time() - started)
        try:
            with anyio.fail_after(max(left, 0.0)):
                yield
        except TimeoutError:
            raise DeadlineExceeded(
                f"{target} did not answer within {seconds:.3f}s", corrid=meta.corrid
            ) from None

    def _outgoing(
        self,
        info: CallInfo,
        channel: Channel,
        endpoint: str,
        record: InstanceRecord,
        declared: str | None,
    ) -> tuple[OutgoingCall, SealedCall | None]:
        """The call as it leaves for one instance: sealed to that instance's key when the
        method is sealed or the caller asked for it (info.meta.seal), the stronger of both."""
        ms = info.meta.deadline_ms
        data, sealed = info.data, None
        seal = _stronger(declared, info.meta.seal)
        if seal is not None:
            data, sealed = self._seal(info, channel, record, seal)
        deadline = None if ms is None else self._clock() + ms / 1000
        if info.deadline is None:
            info.deadline = deadline  # the first attempt's: every retry keeps within it
        call = OutgoingCall(
            endpoint, channel, f"{info.service}.{info.method}", data, info.meta, info.mode, deadline
        )
        return call, sealed

    def _seal(
        self, info: CallInfo, channel: Channel, record: InstanceRecord, seal: str
    ) -> tuple[Any, SealedCall]:
        target = f"{info.service}.{info.method}"
        if self._sealer is None:
            if self._sealing is None:
                raise ConfigurationError(
                    f"{target} is sealed: give the client its credentials (CA, certificate, "
                    "key): Client(tls=jesus.Credentials.load(ca, certificate, key))"
                )
            self._sealer = Sealer(self._sealing)
        codec = channel.spec.codec
        if codec not in CODECS:
            raise ConfigurationError(f"sealing carries {', '.join(CODECS)} data, not {codec}")
        try:
            plaintext = channel.codec.encode(info.data)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"{target}: {codec} cannot encode the request: {exc}") from None
        recipient = self._sealer.recipient(record.service, record.instance_id, record.seal)
        meta = info.meta
        meta.seal = seal
        blob, sealed = self._sealer.seal_request(recipient, seal, codec, plaintext, target, meta)
        value = to_wire(codec, blob)
        if len(value) > MAX_SEALED:
            raise TooLarge(
                f"{target}: a sealed request carries at most {MAX_SEALED} bytes, not {len(value)}"
            )
        return value, sealed

    def _opened(self, sealed: SealedCall, channel: Channel, value: Any, index: int) -> Any:
        """An answer of a sealed call, checked and decoded."""
        plaintext = Sealer.open_answer(sealed, value, index)
        limits = self.options.limits
        return decode_payload(channel.codec, None, plaintext, False, limits, False)[0]

    async def _opened_items(
        self, items: AsyncIterator[Any], sealed: SealedCall, channel: Channel
    ) -> AsyncIterator[Any]:
        index = 0
        ended = False
        try:
            async for item in items:
                if ended:
                    raise SealRefused("an item came after the sealed end of the stream")
                try:
                    value = self._opened(sealed, channel, item, index)
                except SealRefused:
                    if not Sealer.is_end(sealed, item):
                        raise
                    ended = True
                    continue
                yield value
                index += 1
        except CallError as exc:
            raise open_error(sealed, exc) from None
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()  # type: ignore[attr-defined]
        if not ended:
            raise SealRefused(
                "the sealed stream ended without its sealed end: cut short on the way?"
            )

    def _listener_channel(self, record: InstanceRecord, pattern: str) -> Channel:
        try:
            channels = channels_of(record.listens[pattern])
        except ValueError as exc:
            raise Unavailable(f"{record.service}'s record of listener {pattern}: {exc}") from None
        found = self._reachable(channels, record)
        if found is None:
            raise Unavailable(f"{record.service} has no endpoint for its listener of {pattern}")
        return found[0]

    def _reachable(
        self, channels: Sequence[str], record: InstanceRecord
    ) -> tuple[Channel, str] | None:
        """The first of a declaration's channels that this client has installed and the
        instance listens on, with its endpoint; None when there is none. A channel this
        client lacks is skipped when another will do, and named when none will."""
        missing: ChannelNotInstalled | None = None
        for spec in channels:
            try:
                channel = self._channel(spec)
            except ChannelNotInstalled as exc:
                missing = missing or exc
                continue
            endpoint = record.endpoints.get(channel.spec.transport)
            if endpoint is not None:
                return channel, endpoint
        if missing is not None:
            raise missing
        return None

    def _channel(self, spec: str) -> Channel:
        channel = self._channels.get(spec)
        if channel is None:
            channel = self._channels[spec] = resolve_channel(spec, self.catalog)
        return channel

    def _transport(self, channel: Channel) -> TransportClient:
        scheme = channel.spec.transport
        client = self._transports.get(scheme)
        if client is None:
            if self._tg is None:
                raise ConfigurationError("use the client as `async with Client(...) as client:`")
            client = self._transports[scheme] = channel.transport.client(self.options, self._tg)
        return client

    def _seconds(self, timeout: float | None, method: MethodRecord) -> float | None:
        """The call's deadline in seconds: the caller's, else the provider's default for the
        method, else the client's; never past the deadline of the call being handled."""
        if timeout is None:
            timeout = method.timeout if method.timeout is not None else self.timeout
        return remaining_seconds(timeout, self._clock, self._scopes_deadline)

    async def _route(
        self,
        target: str,
        sender: str | None,
        version: str | None,
        strategy: str | Strategy | None,
    ) -> Route:
        """The instances that may take a call, in the order the strategy and their health
        give, with the callee's retry rules."""
        plan = self._plan(target, sender, version)
        records = self.resolver.fresh(plan.service)
        if records is None:
            records = await self.resolver.instances(plan.service)
        return self._arranged(plan, records, strategy)

    def _plan(self, target: str, sender: str | None, version: str | None) -> TargetPlan:
        key = target if sender is None and version is None else (target, sender, version)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._target_plan(target, sender, version)
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()  # targets are the caller's: keep the memory bounded
            self._plans[key] = plan
        return plan

    def _arranged(
        self, plan: TargetPlan, records: list[InstanceRecord], strategy: str | Strategy | None
    ) -> Route:
        if plan.records is not records:
            self._replan(plan, records)
        parent = current_meta.get()
        nested = parent is not None and parent.retries is not None and parent.retries > 1
        if plan.single is not None and not nested:
            return plan.single
        chosen = self.strategy if strategy is None else self._strategy(strategy)
        health = self.resolver.health
        ordered = health.arrange(chosen.order(plan.name, plan.candidates, health))
        # A call made while handling one its caller may retry is not retried: that covers it.
        retry = NO_RETRY if nested else ordered[0].method.retry
        return Route(ordered, plan.name, retry, plan.uniform)

    def _target_plan(self, target: str, sender: str | None, version: str | None) -> TargetPlan:
        service, method, pinned = parse_target(target)
        uses = self._uses.get(sender or self.name)
        use = None if uses is None else uses.get(f"{service}.{method}")
        return TargetPlan(service, method, version or pinned, use)

    def _replan(self, plan: TargetPlan, records: list[InstanceRecord]) -> None:
        if not records:
            self.resolver.forget(plan.service)
            raise ServiceNotFound(f"no live instance of service {plan.service!r} in the registry")
        candidates = self._plan_route(
            records, plan.service, plan.method, self._range(plan.service, plan.pinned), plan.use
        )
        first = candidates[0].request_check
        plan.uniform = all(c.request_check is first for c in candidates)
        plan.candidates = candidates
        plan.single = None
        if len(candidates) == 1:
            plan.single = Route(candidates, plan.name, candidates[0].method.retry, True)
        plan.records = records

    def _strategy(self, spec: str | Strategy) -> Strategy:
        if not isinstance(spec, str):
            return make_strategy(spec)
        if spec == self.strategy.name:
            return self.strategy
        found = self._strategies.get(spec)
        if found is None:
            found = self._strategies[spec] = make_strategy(spec, self.catalog.strategies)
        return found

    def _range(self, service: str, pinned: str | None) -> VersionRange | None:
        if pinned is None:
            return self.versions.get(service)
        found = self._ranges.get(pinned)
        if found is None:
            if len(self._ranges) >= MAX_PLANS:
                self._ranges.clear()
            found = self._ranges[pinned] = VersionRange.parse(pinned)
        return found

    def _fitting(self, route: Route, data: Any, meta: Meta) -> Route:
        """The candidates whose published request schema accepts `data` (instances of
        another version may not): the request is checked once per distinct schema, and
        refused, naming the fields at fault, only when none accepts it."""
        if not self.validate:
            return route
        first = route[0].request_check
        if route.uniform:
            if first is not None and not first.is_valid(data):
                raise self._refused(route, first, data, meta)
            return route
        verdicts: dict[int, bool] = {}
        fit = []
        for candidate in route:
            check = candidate.request_check
            if check is not None:
                ok = verdicts.get(id(check))
                if ok is None:
                    ok = verdicts[id(check)] = check.is_valid(data)
                if not ok:
                    continue
            fit.append(candidate)
        if not fit:
            raise self._refused(route, first, data, meta)
        if len(fit) == len(route):
            return route
        return Route(fit, route.target, route.retry, True)

    @staticmethod
    def _refused(route: Route, check: Any, data: Any, meta: Meta) -> CallError:
        return schema_error(
            InvalidRequest,
            f"request to {route.target} does not match its schema",
            check,
            data,
            meta.corrid,
        )

    def _plan_route(
        self,
        records: list[InstanceRecord],
        service: str,
        method: str,
        versions: VersionRange | None,
        use: dict[str, Any] | None,
    ) -> list[Candidate]:
        route = records
        if versions is not None:
            allowed = versions.choose([r.version for r in records])
            route = [r for r in records if r.version in allowed]
            if not route:
                running = ", ".join(sorted({r.version for r in records}))
                raise ServiceNotFound(
                    f"no live instance of {service!r} in version range {versions} "
                    f"(running: {running})"
                )
        plan = []
        misfits: list[str] = []
        for record in route:
            method_rec = record.methods.get(method)
            if method_rec is None:
                continue
            if use is not None:
                misfit = self._compatible.refusal(use, record, method, method_rec)
                if misfit:
                    misfits.append(misfit)
                    continue
            found = self._reachable(method_rec.channels, record)
            if found is not None:
                channel, endpoint = found
                plan.append(
                    Candidate(
                        record,
                        method_rec,
                        channel,
                        endpoint,
                        self._transport(channel),
                        self.validators.get(method_rec.request) if self.validate else None,
                        self.validators.get(method_rec.response) if self.validate else None,
                    )
                )
        if plan:
            return plan
        if misfits:
            raise ServiceNotFound(
                f"no instance of {service!r} fits what this caller declared it uses of "
                f"{method}: {misfits[0]}"
            )
        if any(method in r.methods for r in route):
            raise ServiceNotFound(f"no instance of {service!r} has an endpoint for {method!r}")
        raise UnknownMethod(f"service {service!r} has no method {method!r}")

    async def _stream_innermost(self, info: CallInfo) -> AsyncIterator[Any]:
        """Open the stream (middleware sees its opening; items flow past it)."""
        first: Candidate = info.route[0]
        call, sealed = self._outgoing(
            info, first.channel, first.endpoint, first.record, first.method.seal
        )
        items = first.transport.stream(call)
        return items if sealed is None else self._opened_items(items, sealed, first.channel)

    async def _send_innermost(self, info: CallInfo) -> Any:
        """Send to the instances of the route in turn (jesus.routing.retries): a request
        that never left moves to the next one at once; another failure is tried again only
        when its error says it is safe, within the callee's attempts, the call's deadline
        and the client's retry budget. Each answer is opened (sealed) and checked against
        the schema of the instance that gave it."""
        route: Route = info.route
        # One instance has no other to be chosen over: what health tells would change nothing.
        health = self.resolver.health if len(route) > 1 else None
        self.retry_budget.deposit()
        attempt = 1
        index = 0
        state = None
        while True:
            candidate = route[index]
            index += 1
            if health is not None:
                state = health.started(candidate.record.instance_id)
            began = time.monotonic()
            try:
                call, sealed = self._outgoing(
                    info,
                    candidate.channel,
                    candidate.endpoint,
                    candidate.record,
                    candidate.method.seal,
                )
                try:
                    result = await candidate.transport.request(call)
                except CallError as exc:
                    raise exc if sealed is None else open_error(sealed, exc) from None
                if info.mode is ResponseMode.RESPONSE:
                    if sealed is not None:
                        result = self._opened(sealed, candidate.channel, result, 0)
                    check = candidate.response_check
                    if check is not None and not check.is_valid(result):
                        raise schema_error(
                            InvalidResponse,
                            f"{route.target} answered with a value that does not match its schema",
                            check,
                            result,
                            info.meta.corrid,
                        )
            except CallError as exc:
                if state is not None:
                    now = time.monotonic()
                    self.resolver.health.failed(state, now - began, exc, now)
                unsent = isinstance(exc, Unavailable) and not (exc.remote or exc.may_have_run)
                if unsent:
                    self.resolver.mark_failed(candidate.record)
                    if index < len(route):
                        continue  # nothing left: nothing can have run
                if attempt >= route.retry.attempts or not exc.safe_to_retry(route.idempotent):
                    raise
                delay = route.retry.delay(attempt, _retry_after(exc))
                if info.deadline is not None and anyio.current_time() + delay >= info.deadline:
                    raise
                if not self.retry_budget.withdraw():
                    log.debug("retry budget spent: not retrying %s: %s", route.target, exc)
                    raise
                attempt += 1
                index %= len(route)
                log.debug("retrying %s (attempt %d) after %s", route.target, attempt, exc)
                if delay:
                    await anyio.sleep(delay)
                if info.deadline is not None:
                    left = info.deadline - anyio.current_time()
                    info.meta.deadline_ms = max(0, int(left * 1000))
                continue
            if state is not None:
                now = time.monotonic()
                # A noResponse call returns once written: its time says nothing of the instance.
                took = 0.0 if info.mode is ResponseMode.NO_RESPONSE else now - began
                self.resolver.health.succeeded(state, took, now)
            return result
        if sealed is not None:
            result = self._opened(sealed, candidate.channel, result, 0)
        check = candidate.response_check
        if check is not None and not check.is_valid(result):
            raise schema_error(
                InvalidResponse,
                f"{info.service}.{info.method} answered with a value that does not match its "
                "schema",
                check,
                result,
                info.meta.corrid,
            )
        return result
