"""Presto-Deck: turn a prompt into a presentation deck with an LLM and stream it live."""

__version__ = "0.1.0"
