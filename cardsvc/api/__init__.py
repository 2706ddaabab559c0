"""The issuer's HTTP API: thin routers over domain services."""
