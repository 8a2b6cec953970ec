"""Steward's kernel: what the API, the workers and the CLI share.

Kept import-light on purpose: workflow sandboxes import `steward.search_attributes`, and nothing
here may drag settings, sockets or web servers into them.
"""

__version__ = "0.1.0"
