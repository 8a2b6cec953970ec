"""Telling the outside world about runs: activities that deliver notifications.

webhook.py: signed webhooks (Standard Webhooks) to a run's callback URL and the platform's own
endpoint. Workflows call these through workflows/notifications.py, which never lets a failed
delivery change a business decision.
"""
