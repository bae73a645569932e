"""The federation protocol between Signet nodes.

Everything here is pure (no I/O, no FastAPI, SQLModel or httpx) except `client.py`:

    errors.py    the protocol's error tree, each class with an HTTP `status` hint
    sfv.py       a strict RFC 8941 structured-field parser/serialiser (the subset RFC 9421 needs)
    httpsig.py   RFC 9421 HTTP message signatures (ed25519) + RFC 9530 Content-Digest, and the
                 nonce cache protocol: every request between nodes is signed and verified here
    audience.py  TLP / audience / hop-limit rules and per-peer `SharingPolicy`: what may be sent
                 to whom (`may_send`) and what may be kept (`may_accept`)
    pages.py     wire formats: `RecordsPage` (pull answer, records in hop-counting envelopes)
                 and `Notify` (push body), parsed strictly
    client.py    the only I/O: signed httpx calls to peers (pull, notify, descriptor)

Keys enter as callables (`sign(bytes) -> bytes`, `keyid -> verify(bytes, sig) | None`) so this
package does not depend on how `app/crypto` stores them; record signatures are verified by
`app/crypto`, storage and transactions live in `app/services` and `app/storage`.
"""
