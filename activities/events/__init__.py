"""Events: the audit log seen from outside (model.py), read as it grows (feed.py), and delivered
to webhook subscriptions (subscriptions.py, delivery.py)."""
