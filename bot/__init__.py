"""Switchboard core: settings, the turn pipeline, sessions, LLM engines and the CLI."""

__version__ = "0.1.0"
