"""A data payload's way back to a value, under every decode limit and the same on every
transport: inflated to at most `max_decompressed_size` bytes, then decoded to at most
`max_decoded_items` values.

A payload that inflates past `HEAVY` bytes takes long enough to decode that it would stall
every other peer of the server. On the event loop (`inline=True`) decoding stops there and
raises `Heavy`; the transport then decodes it again in a worker thread (`inline=False`).
The inline attempt costs at most HEAVY bytes of work.
"""

from __future__ import annotations

from typing import Any

from jesus.errors import BadFrame, TooLarge
from jesus.limits import Limits

HEAVY = 256 * 1024


class Heavy(Exception):
    """The payload must be decoded off the event loop."""


def decode_payload(
    codec: Any,
    compression: Any,
    payload: bytes,
    compressed: bool,
    limits: Limits,
    inline: bool = True,
) -> tuple[Any, int]:
    """The value of a payload and its decoded size in bytes. Raises TooLarge (a bomb, too
    many values) or BadFrame (garbage), for the sender of that payload alone; `Heavy`."""
    limit = limits.max_decompressed_size
    if compressed:
        bounded = inline and limit > HEAVY
        try:
            payload = compression.decompress(payload, HEAVY if bounded else limit)
        except TooLarge:
            if bounded:
                raise Heavy from None
            raise
        except ValueError as exc:
            raise BadFrame(str(exc)) from exc
    elif inline and len(payload) > HEAVY:
        raise Heavy
    decode = getattr(codec, "decode_limited", None)
    try:
        if decode is None:
            return codec.decode(payload), len(payload)
        return decode(payload, limits.max_decoded_items), len(payload)
    except ValueError as exc:
        raise BadFrame(str(exc)) from exc
    except RecursionError:
        raise BadFrame("the payload is nested too deep to decode") from None
