"""What `jesus -v call` and `jesus -v emit` tell: where each call or delivery goes, over which
channel, with which corrid, and how it ended. A client middleware, so it reports what the
client really did, not what the command meant to do."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from jesus.errors import CallError, ConfigurationError
from jesus.middleware import CallInfo, Middleware, NextCall
from jesus.plugins import Catalog, default_catalog

log = logging.getLogger("jesus.cli")


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"


class Narrator(Middleware):
    """Logs each outgoing call and event delivery; keeps why each listener group failed
    (`failures`), which a noResponse emit does not raise."""

    name = "cli-narrator"

    def __init__(self) -> None:
        self.failures: dict[str, Exception] = {}

    async def client(self, call: CallInfo, call_next: NextCall) -> Any:
        target = f"{call.service}.{call.method}"
        if call.meta.event is not None:
            return await self._delivery(call, call_next)
        candidates = call.route or []
        if candidates:
            first = candidates[0]
            log.info(
                "%s: %d instance(s) can take it; first %s %s [%s] at %s",
                target,
                len(candidates),
                first.record.service,
                first.record.version,
                first.record.instance_id,
                first.endpoint,
            )
        log.info(
            "calling %s as %s over %s [corrid=%s, deadline %s]",
            target,
            call.mode.value,
            call.channel,
            call.meta.corrid,
            "none" if call.meta.deadline_ms is None else f"{call.meta.deadline_ms} ms",
        )
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except Exception as exc:
            log.info("%s failed after %s: %s", target, _ms(started), exc)
            raise
        if call.mode.value != "stream":  # a stream's items are counted as they come
            log.info("%s answered in %s", target, _ms(started))
        return result

    async def _delivery(self, call: CallInfo, call_next: NextCall) -> Any:
        record, pattern, _channel = call.route
        group = str(record.listens[pattern].get("group") or record.service)
        log.info(
            "delivering %s to group %s: %s [%s] (listener %s) at %s over %s as %s [corrid=%s]",
            call.meta.event,
            group,
            record.service,
            record.instance_id,
            pattern,
            record.endpoints.get(call.channel.split("+", 1)[0], "?"),
            call.channel,
            call.mode.value,
            call.meta.corrid,
        )
        started = time.perf_counter()
        try:
            result = await call_next(call)
        except (CallError, ConfigurationError) as exc:
            self.failures[group] = exc
            log.info("group %s: not delivered after %s: %s", group, _ms(started), exc)
            raise
        self.failures.pop(group, None)  # another instance of the group took it
        what = "acknowledged" if call.mode.value == "ack" else "sent"
        log.info("group %s: %s in %s", group, what, _ms(started))
        return result


def narrated(narrator: Narrator, catalog: Catalog | None = None) -> Catalog:
    """The catalog with the narrator outermost of the client middleware."""
    catalog = catalog or default_catalog()
    return dataclasses.replace(catalog, middleware=[narrator, *catalog.middleware])
