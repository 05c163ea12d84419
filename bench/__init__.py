"""The benchmark: speed and quality of both engines, measured in one run (``python -m bench``)."""
