"""synth.py's editing options (issue 17; configs/editing.py has the fields and checks):
repair (--mask), expand (--expand, --anchor), material stacks (--map) and remake (--remake,
--remake-weight, --remake-colours)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.options import registry_choices
from configs.editing import ANCHORS, FILL_STARTS, MAP_NAMES, REMAKE_COLOURS, REMAKE_WEIGHT

AnchorName = registry_choices("AnchorName", ANCHORS)
FillStartName = registry_choices("FillStartName", FILL_STARTS)
RemakeColoursName = registry_choices("RemakeColoursName", REMAKE_COLOURS)

Mask = Annotated[
    str | None,
    typer.Option(
        help="Repair the first image where FILE is white, or 'alpha': where it is transparent; "
        "only those pixels change. Further images: exemplars to learn from (default: the "
        "image's own kept part)."
    ),
]
Expand = Annotated[
    str | None,
    typer.Option(
        help="Grow the first image to WxH, kept unchanged in place; the new area is "
        "synthesised from it."
    ),
]
Anchor = Annotated[
    AnchorName | None, typer.Option(help="--expand: where the image stays (default center).")
]
FillStart = Annotated[
    FillStartName | None,
    typer.Option(
        help="--mask, --expand: how the fill starts: blocks (copies of the kept pixels' blocks, "
        "blended into them), grow (from noise, coarse to fine), or auto (default: blocks "
        "where the kept pixels hold enough whole blocks, else grow)."
    ),
]
Maps = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help=f"NAME=FILE, repeatable: a map aligned with the exemplar (the albedo), "
        f"synthesised with it and written as OUT_NAME.png; NAME: {', '.join(MAP_NAMES)}.",
    ),
]
Remake = Annotated[
    str | None,
    typer.Option(
        help="Re-render this TARGET image with the exemplars' texture, keeping its large layout; "
        "the output has its size."
    ),
]
RemakeWeight = Annotated[
    float | None,
    typer.Option(
        help=f"--remake: weight of the content term that keeps the target's layout "
        f"(default {REMAKE_WEIGHT:g}; 0: the target is only the start)."
    ),
]
RemakeColours = Annotated[
    RemakeColoursName | None,
    typer.Option(
        help="--remake (patch engine): exemplar (default): the target's light and dark in the "
        "exemplars' colours; target: keep the target's own colours."
    ),
]
