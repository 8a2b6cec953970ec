"""Compliance review steps that are neither LLM calls nor reports: normalising applicant data."""
