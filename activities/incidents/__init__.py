"""Incident response steps that are neither LLM calls nor notifications: routing, the postmortem."""
