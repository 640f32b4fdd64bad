"""Access: who is calling (API keys) and what they may use."""
