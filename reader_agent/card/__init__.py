"""The cardsvc social security card applet: shared constants and the client session.

:mod:`reader_agent.card.constants` is shared with the emulator (constants only, no logic);
:mod:`reader_agent.card.session` is the client, one method per card command.
"""
