"""LLM providers: an OpenAI-compatible endpoint, or the offline rule engine."""
