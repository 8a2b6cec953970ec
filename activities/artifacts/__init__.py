"""The artifact store: where big payloads (reports, documents) live, so histories hold only
references — a name and a SHA-256."""
