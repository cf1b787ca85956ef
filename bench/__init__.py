"""gradprobe bench harness: configs, the seed-batched engine, records and the CLI."""

__version__ = "0.1.0"
