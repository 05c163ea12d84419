"""The optimize engine: the output's pixels are optimised against the exemplar's statistics."""
