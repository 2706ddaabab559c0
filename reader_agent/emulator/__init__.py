"""The card emulator: the cardsvc applet (:mod:`.applet`), its persistent state
(:mod:`.state`) and the vpcd socket client that plugs it into pcscd (:mod:`.vpcd`).

It implements docs/card-protocol.md independently of the client in
:mod:`reader_agent.card.session`; the two share only the constants.
"""
