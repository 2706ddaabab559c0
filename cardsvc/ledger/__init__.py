"""The benefit ledger: what each person is owed (benefit, period, amount in fen)."""
