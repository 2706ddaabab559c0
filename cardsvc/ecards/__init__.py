"""E-cards: activation, device binding, QR tokens and online verification (no HTTP).

An e-card binds a phone's device key to a person with an active card and follows that
card: its status-list entry publishes the e-card's own state combined with the card's.
"""
