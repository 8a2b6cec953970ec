"""Reports: documents a run produces for people (PDF), stored in the artifact store."""
