"""The tamper-evident audit log: an RFC 6962 Merkle tree of what the issuer did.

:func:`cardsvc.audit.log.append` adds a leaf inside the caller's transaction;
:mod:`cardsvc.audit.checkpoints` signs tree heads; :mod:`cardsvc.audit.verify` recomputes
everything from the database and names the first divergence.
"""
