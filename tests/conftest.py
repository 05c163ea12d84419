"""Shared fixtures: exemplars made in code, so a fresh clone is self-contained."""

import pytest

from data.images import save_image
from data.procedural import make


@pytest.fixture
def exemplar_path(tmp_path):
    """A 64 px procedural exemplar PNG."""
    path = tmp_path / "exemplar.png"
    save_image(make("cells", 64, seed=3), path)
    return path
