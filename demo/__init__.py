"""The end-to-end demo behind ``./dev run``: issuer, emulated card, reader agent, pages.

Layers: :mod:`demo.world` puts the demo person, card, terminal and entitlement in the
issuer's database (idempotent: a second run finds them); :mod:`demo.processes` starts and
stops pcscd, the card emulator and the reader agent's counter page; :mod:`demo.run` ties
them to the issuer's server and prints what to try.
"""
