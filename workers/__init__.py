"""Assembling and running Temporal workers for every workflow in the catalog."""
