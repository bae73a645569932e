"""Pure cryptography for Signet: no I/O beyond the node key file, no web or database imports.

    canonical   RFC 8785 canonical JSON, the bytes every signature covers
    keys        NodeKey, VerifierKey (C2SP vkeys), origins, the single Ed25519 verify path
    records     signed JSON records (origin, key_id, signature)
    merkle      RFC 6962/9162 hashing; perfect-subtree storage model; proofs and checks
    note        C2SP signed-note
    checkpoint  C2SP tlog-checkpoint and tlog-cosignature v1
    witness     C2SP tlog-witness add-checkpoint decision
    oprf        RFC 9497 OPRF/VOPRF/POPRF, ristretto255-SHA512 (libsodium via pysodium)
    oprf_threshold  the OPRF key Shamir-shared among key holders; verify partials, combine
    errors      the crypto-specific errors, drawn there on top of `app.errors`

Every `verify_*` returns None or raises; every third-party exception is re-raised as ours.
"""
