"""The HTTP/1.1 server that runs the gateway (see protocol.py and runner.py)."""

from .runner import ServeOptions, serve

__all__ = ["ServeOptions", "serve"]
