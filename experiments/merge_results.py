"""One RESULTS.md from benchmark runs of separate parts (e.g. ``--no-quality`` and
``--no-speed`` run side by side on two machines).

    python -m experiments.merge_results A/results.json [B/results.json ...] > RESULTS.md
"""

from __future__ import annotations

import json
import sys

from bench.report import render


def merge(parts: list[dict]) -> dict:
    """One results dict from runs of separate parts (e.g. ``--no-quality`` and ``--no-speed``
    run side by side): sections are combined; commands and wall times are listed."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value  # e.g. per_evaluation rows of other sizes
            elif value not in (None, [], {}) and key not in merged:
                merged[key] = value  # the first part's machine, matmul peak, ... are kept
    merged["command"] = "` and `".join(p["command"] for p in parts)
    merged["wall_s"] = max(p["wall_s"] for p in parts)
    merged["complete"] = all(p.get("complete") for p in parts)
    return merged


if __name__ == "__main__":
    print(render(merge([json.loads(open(p).read()) for p in sys.argv[1:]])), end="")
