"""Per-message sealing: `seal="sign"` or `seal="encrypt"` on a method or listener.

    envelope  the sealed message and the grant, byte for byte (PROTOCOL.md, "Sealing")
    identity  certificates: checked against local trust anchors, signing with their key
    keys      a server's sealing keys (X25519, for HPKE): made, rotated, published, checked
    grants    data keys: a caller's per-recipient key, wrapped with HPKE to the recipient
    replay    the counter window that refuses a replayed message
    seal      Sealer (the caller's end) and Opener (the recipient's end)

The pattern is Apache Pulsar's end-to-end encryption: each caller makes a data key per
recipient key, wraps it with HPKE (RFC 9180) to the recipient's public key and signs the
grant with its certificate's key; each message is then one AEAD (ChaCha20-Poly1305) under
that data key, so the per-message cost is symmetric. The registry carries the recipients'
keys, each signed by a certificate the caller checks against its own trust anchors: the
registry is not trusted.
"""
