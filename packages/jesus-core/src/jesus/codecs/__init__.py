"""Codecs turn Python values into bytes and back: the first stage of a channel."""

from jesus.codecs.base import Codec

__all__ = ["Codec"]
