"""Messaging: what Mercurio says to people, on which channel, and whether it may say it now."""
