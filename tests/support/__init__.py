"""Test doubles that run as real servers (fake LLM endpoints and the like)."""
