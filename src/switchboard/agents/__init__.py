"""Agents served as models: agent files, the MCP client pool and the server-side tool loop."""
