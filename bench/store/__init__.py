"""What a run leaves on disk: records, training records, the manifest, the run directory."""
