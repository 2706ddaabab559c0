"""The ``cardsvc`` command line."""
