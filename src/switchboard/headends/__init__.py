"""Headends: each parses and validates one wire format and encodes hub results back to it."""
