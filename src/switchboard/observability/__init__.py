"""Observability: Prometheus metrics and the structured access log, both fed by gateway observers."""
