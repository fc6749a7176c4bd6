"""Compressions sit between codec and transport; decompression is always bounded."""

from jesus.compression.base import Compression

__all__ = ["Compression"]
