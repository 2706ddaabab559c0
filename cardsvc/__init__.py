"""cardsvc: issues social security cards and e-cards and verifies them."""

__version__ = "0.1.0"
