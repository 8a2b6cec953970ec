"""The audit log: what happened in every run, kept beyond Temporal's retention and provably unedited."""
