"""Workflows that exist only for tests, loaded through STEWARD_WORKFLOW_PACKAGES — which also
proves that setting: a package outside `workflows/` joins the catalog by being named there."""
