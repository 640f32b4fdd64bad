"""Routing: which deployment answers a model, and how failures are retried or fall back."""
