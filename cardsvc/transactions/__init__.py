"""Counter transactions: identity verification, benefit collection and fee payment."""
