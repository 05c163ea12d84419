"""The editing fields of ``SynthConfig`` (repair, expand, material stacks, remake; issue 17)
and their checks. Repair, expand and stacks run on the patch engine only
(``optimize/editing.py``, ``optimize/stacks.py``): its pixels can be kept and its channels
stacked. Remake (``optimize/remake.py``) runs on both engines: it only adds a content term
and starts from the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data.errors import UserError
from data.sizes import parse_size

# --anchor: where --expand keeps the image, as (row, column) fractions of the free space.
ANCHORS = {
    "center": (0.5, 0.5),
    "top-left": (0.0, 0.0),
    "top": (0.0, 0.5),
    "top-right": (0.0, 1.0),
    "left": (0.5, 0.0),
    "right": (0.5, 1.0),
    "bottom-left": (1.0, 0.0),
    "bottom": (1.0, 0.5),
    "bottom-right": (1.0, 1.0),
}
# --map names: a closed set, so that a typo (--map rougness=...) is an error and every output
# name is a known suffix. The first exemplar is the albedo.
MAP_NAMES = (
    "normal", "roughness", "height", "displacement", "ao", "metallic", "specular", "gloss",
    "opacity", "mask", "emission",
)  # fmt: skip
# --fill-start: how a --mask hole or an --expand band starts (optimize/editing.py): blocks,
# copies of the kept pixels' blocks blended into the ring and refined at full scale; grow,
# noise refined coarse to fine beside the kept pixels; auto, blocks where the sources hold
# enough whole blocks, else grow. Blended blocks joined better on all nine holes measured
# (seam 0.68-6.85 against 1.68-14.2) in a third to a half of the time (decisions.md,
# session 17).
FILL_STARTS = ("auto", "blocks", "grow")
ALPHA = "alpha"  # --mask alpha: the image's own alpha channel, transparent = fill
# --remake-weight's default, on both objectives: the layout against the texture, measured
# on stripes remade in dots (README, Editing; the branch's notes).
REMAKE_WEIGHT = 0.3
# --remake-colours: the patch remake draws the target in the exemplars' palette, or keeps
# its own colours (before session 41's palette, the only way; docs/decisions.md)
REMAKE_COLOURS = ("exemplar", "target")


@dataclass
class EditFields:
    """What ``synth.py`` edits instead of synthesising from scratch (the patch engine only;
    remake on both objectives)."""

    # repair the first image where this mask FILE is white, or "alpha": where the image is
    # transparent; further images are the exemplars it learns from (default: its known part)
    mask: str | None = None
    expand: str | None = None  # WxH: grow the first image to this size, itself kept in place
    anchor: str = "center"  # where --expand keeps the image: center, top-left, top, ...
    fill_start: str = "auto"  # --mask, --expand: how the fill starts (FILL_STARTS)
    # NAME=FILE maps aligned with the (albedo) exemplar, synthesised with it: out_NAME.png
    maps: list[str] = field(default_factory=list)
    # re-render this target image with the exemplars' texture, keeping its large layout; the
    # output has the target's size
    remake: str | None = None
    # weight of --remake's content term (the output's layout against the target's); 0: the
    # target is only the start
    remake_weight: float = REMAKE_WEIGHT
    # --remake's colours: the exemplars' palette at the target's light and dark, or the
    # target's own (REMAKE_COLOURS)
    remake_colours: str = "exemplar"


EDIT_OPTIONS = (
    "mask", "expand", "anchor", "fill_start", "maps", "remake", "remake_weight", "remake_colours",
)  # fmt: skip


def flag(name: str) -> str:
    return "--map" if name == "maps" else "--" + name.replace("_", "-")


def edit_flags(values: dict) -> list[str]:
    """The editing options set in ``values`` (a CLI dict: None or [] = not given)."""
    return [flag(k) for k in EDIT_OPTIONS if values.get(k)]


def is_edit(cfg) -> bool:
    """Whether ``cfg`` repairs, expands or stacks (the patch editors; remake is apart)."""
    return bool(cfg.mask or cfg.expand or cfg.maps)


def refuse_edits(values: dict, where: str) -> None:
    """A UserError if ``values`` sets an editing option where ``where`` cannot edit."""
    flags = edit_flags(values)
    if flags:
        raise UserError(
            f"{', '.join(flags)}: not supported by {where}; editing runs on the patch engine "
            "(optimize mode, --objective patches, the default patch_pyramid preset)"
        )


def parse_maps(items: list[str]) -> dict[str, Path]:
    """``["normal=n.png", ...]`` -> {"normal": Path("n.png"), ...}, in the order given."""
    maps: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip().lower()
        if not sep or not name or not path:
            raise UserError(f"--map {item!r}: expected NAME=FILE, such as normal=normal.png")
        if name not in MAP_NAMES:
            raise UserError(
                f"--map {item!r}: unknown map name '{name}'; choose from {', '.join(MAP_NAMES)} "
                "(the exemplar itself is the albedo)"
            )
        if name in maps:
            raise UserError(f"--map: the map name '{name}' is given twice")
        maps[name] = Path(path)
    return maps


def map_output(path: Path, name: str) -> Path:
    """out.png, "normal" -> out_normal.png: where a stack's map goes."""
    return path.with_name(f"{path.stem}_{name}{path.suffix}")


def check_edit(cfg, given: set[str]) -> None:
    """Refuse editing options that cannot work together or with ``cfg``'s objective
    (``cfg``: a SynthConfig; ``given``: the names of the options on the command line)."""
    values = {k: getattr(cfg, k) for k in EDIT_OPTIONS}
    values["anchor"] = "anchor" in given and cfg.anchor
    values["fill_start"] = "fill_start" in given and cfg.fill_start
    values["remake_weight"] = "remake_weight" in given
    values["remake_colours"] = "remake_colours" in given and cfg.remake_colours
    if cfg.objective != "patches":
        patch_only = {**values, "remake": None, "remake_weight": None}
        refuse_edits(patch_only, f"the {cfg.objective} objective")
    kinds = [f for f in ("--mask", "--expand", "--map", "--remake") if f in edit_flags(values)]
    if len(kinds) > 1:
        raise UserError(f"{' and '.join(kinds)}: give one editing option at a time")
    if values["remake_weight"] and not cfg.remake:
        raise UserError("--remake-weight: only --remake uses it")
    if cfg.remake_colours not in REMAKE_COLOURS:
        choices = ", ".join(REMAKE_COLOURS)
        raise UserError(f"unknown --remake-colours '{cfg.remake_colours}'; choose from {choices}")
    if values["remake_colours"] and not cfg.remake:
        raise UserError("--remake-colours: only --remake uses it")
    if cfg.remake and cfg.size:
        raise UserError("--size: --remake keeps the target's size; leave --size out")
    if cfg.remake and cfg.tile:
        raise UserError("--tile with --remake: the target's layout is not periodic")
    _check_fill(cfg, values)
    if cfg.maps:
        parse_maps(cfg.maps)


def _check_fill(cfg, values: dict) -> None:
    """``check_edit``'s checks of repair and expand (``values``: the options given)."""
    if cfg.anchor not in ANCHORS:
        raise UserError(f"unknown --anchor '{cfg.anchor}'; choose from {', '.join(ANCHORS)}")
    if values["anchor"] and not cfg.expand:
        raise UserError("--anchor: only --expand uses it")
    if cfg.fill_start not in FILL_STARTS:
        choices = ", ".join(FILL_STARTS)
        raise UserError(f"unknown --fill-start '{cfg.fill_start}'; choose from {choices}")
    if values["fill_start"] and not (cfg.mask or cfg.expand):
        raise UserError("--fill-start: only --mask and --expand use it")
    if cfg.expand:
        parse_size(cfg.expand)
    if (cfg.mask or cfg.expand) and cfg.size:
        what = "--mask keeps the image's size" if cfg.mask else "--expand sets the size"
        raise UserError(f"--size: {what}; leave --size out")
    if cfg.mask and cfg.tile:
        raise UserError("--tile with --mask: the kept pixels fix the image's borders")
