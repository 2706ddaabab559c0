"""Reader agent: talks to smart-card readers over PC/SC (pcscd) for cardsvc counters.

Layers, one module each: :mod:`reader_agent.pcsc` is the only module that touches pyscard;
:mod:`reader_agent.errors` holds the typed errors every layer raises.
"""
