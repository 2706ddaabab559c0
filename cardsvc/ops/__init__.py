"""Running the issuer: Prometheus metrics, structured logs with request ids, readiness."""
