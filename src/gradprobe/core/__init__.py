"""The core every layer builds on: errors, atomic files, hashes, versioned documents.

Nothing here imports torch, scipy, matplotlib or any other gradprobe package."""
