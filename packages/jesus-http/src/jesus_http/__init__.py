"""jesus-http: the HTTP/1.1 transport, server and pooled client, on anyio."""

from jesus_http.transport import HttpTransport

__all__ = ["HttpTransport"]
