"""The one LLM layer every AI step goes through.

run_llm_task (activity.py) screens untrusted text, renders a versioned prompt, calls a provider
(an OpenAI-compatible endpoint, or the offline rule engine), validates the answer against the
task's JSON Schema and the output policy, repairs once, and returns the answer with a ledger
record of the call. docs/llm.md is the reference.
"""
