"""One-off measurement tools, kept for the notes that quote them (docs/decisions.md)."""
