"""Steward's workflows: one module per workflow class, found automatically.

A module here that defines a module-level `WorkflowSpec` is a workflow the worker hosts and the
API offers; see docs/adding-a-workflow.md. Shared building blocks (spec, stage) sit beside them.
"""
