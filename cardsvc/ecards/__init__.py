"""E-cards: activation, device binding, QR tokens and online verification (no HTTP).

An e-card binds a phone's device key to a person with an active card and follows that
card: its status-list entry publishes the e-card's own state combined with the card's.

One module per job: :mod:`~cardsvc.ecards.activation` (codes, counter activation,
device binding), :mod:`~cardsvc.ecards.tokens` (device proofs, QR tokens, offline
credentials), :mod:`~cardsvc.ecards.verifier` (online verification, behind both the
route and the ASGI fast path), :mod:`~cardsvc.ecards.views` (cached reads, live status).
"""
