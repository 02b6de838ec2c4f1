"""Messaging: who may be sent what, when, on which channel, and how it is measured."""
