"""Behaviour of one part at a time: events, fold, pipeline, auth and redaction, settings, the CLI commands."""
