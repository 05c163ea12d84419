"""Synthesis engines built on the shared objective: L-BFGS on pixels, and generators."""
