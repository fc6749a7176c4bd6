"""The caller of a call as proven, never as claimed: the meta's `from` is the caller's word,
a `Caller` is what its mutual-TLS certificate, its seal or its unix peer credentials show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Caller:
    """`name` is the identity proven by `proof` ("tls": the subject common name of a
    certificate the server's trust anchors verified; "seal": the same, of the certificate
    that signed a sealed message), None when nothing proves one. `uid`/`pid` are the unix
    peer credentials; `address` is where the call came from, for logs."""

    name: str | None = None
    proof: str = "none"
    uid: int | None = None
    pid: int | None = None
    address: str = ""

    def __str__(self) -> str:
        who = f"{self.name!r}" if self.name is not None else "an anonymous caller"
        how = [] if self.proof == "none" else [f"proven by {self.proof}"]
        if self.uid is not None:
            how.append(f"uid {self.uid}, pid {self.pid}")
        if self.address:
            how.append(f"from {self.address}")
        return f"{who} ({', '.join(how)})" if how else who


ANONYMOUS = Caller()


def common_name(certificate: Any) -> str | None:
    """The subject commonName of a certificate as `ssl.SSLSocket.getpeercert()` gives it
    (a dict, empty or None when the peer sent none or it was not verified)."""
    if not certificate:
        return None
    for rdn in certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
