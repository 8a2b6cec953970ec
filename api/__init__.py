"""Steward's HTTP API: validate, authorize, translate to a Temporal call, translate back."""
