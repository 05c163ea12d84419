"""Command-line plumbing: options, progress bars, batches, generate mode, memory checks."""
