from __future__ import annotations

import threading

import zstandard

from jesus.errors import TooLarge


class ZstdCompression:
    name = "zstd"
    content_encoding = "zstd"

    def __init__(self, level: int = 3) -> None:
        self._cctx = zstandard.ZstdCompressor(level=level)
        # A decompressor is not thread-safe, and heavy payloads are inflated in worker threads.
        self._local = threading.local()

    def compress(self, data: bytes) -> bytes:
        return self._cctx.compress(data)

    @property
    def _dctx(self) -> zstandard.ZstdDecompressor:
        try:
            return self._local.dctx  # type: ignore[no-any-return]
        except AttributeError:
            dctx = self._local.dctx = zstandard.ZstdDecompressor()
            return dctx

    def decompress(self, data: bytes, max_size: int) -> bytes:
        dctx = self._dctx
        try:
            declared = zstandard.frame_content_size(data)
            if declared > max_size:
                raise TooLarge(
                    f"zstd frame declares {declared} bytes, over the limit of {max_size}"
                )
            if declared == -1:
                # Size not in the header: read at most one byte past the limit to tell.
                with dctx.stream_reader(data, read_across_frames=True) as reader:
                    if len(reader.read(max_size + 1)) > max_size:
                        raise TooLarge(f"zstd payload inflates past the limit of {max_size} bytes")
            # Bounded either by the checked header or by max_output_size.
            return dctx.decompress(data, max_output_size=max_size)
        except zstandard.ZstdError as exc:
            raise ValueError(f"invalid zstd data: {exc}") from exc
