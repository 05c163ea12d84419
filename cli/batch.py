"""Batch synthesis of a whole collection: one output per exemplar, class folder or checkpoint.

``synth.py`` runs a batch when the exemplar argument is a folder, when several exemplars go to
an output folder (``-o OUTDIR``, no ``.png``), with ``--batch``, or in generate mode when
``--checkpoint`` is a folder of checkpoints. Items:

- optimize mode: each image file is one item (``OUTDIR/<stem>.png``); each sub-folder of an
  exemplar folder is one class item whose readable images are used together as a
  multi-exemplar input (averaged Gram targets; ``OUTDIR/<folder>.png``);
- generate mode: each sub-folder holding ``model.safetensors`` (or ``final/model.safetensors``)
  and each ``*.safetensors`` file of the checkpoint folder (``OUTDIR/<name>.png``).

An item whose image and JSON sidecar both exist (and did not stop at Ctrl-C) is skipped, so a
rerun finishes an interrupted batch; ``--overwrite`` redoes everything. A failing item is
reported in one line and the batch goes on; the command exits with code 2 at the end if any
item failed. Under ``accelerate launch`` the items are split between the processes with
``PartialState.split_between_processes`` (each process on its own device); the main process
writes ``OUTDIR/contact_sheet.png`` (exemplar | result, named) after all have finished.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from cli.console import numbered, say
from data.datasets import image_files
from data.errors import UserError
from data.sheets import contact_sheet

CONTACT_SHEET = "contact_sheet.png"


@dataclass
class Item:
    name: str  # output stem
    sources: list[Path]  # exemplar files (optimize) or one checkpoint (generate)
    exemplar: Path | None = None  # shown on the contact sheet
    outputs: list[Path] = field(default_factory=list)


def is_batch(generate: bool, exemplars: list[Path], output: Path, cfg, batch: bool) -> bool:
    """Whether ``synth.py``'s options ask for a batch (see the module docstring); ``cfg`` is
    generate mode's ``GenerateConfig`` or optimize mode's ``SynthConfig``."""
    if batch:
        return True
    if generate:
        ckpt = cfg.checkpoint
        return ckpt is not None and bool(checkpoint_items(Path(ckpt), strict=False))
    if len(exemplars) == 1 and exemplars[0].is_dir():
        return True
    return len(exemplars) > 1 and (output.is_dir() or not output.suffix)


def exemplar_items(paths: list[Path]) -> list[Item]:
    """Items of optimize mode: files, the image files of folders, and class sub-folders."""
    items = []
    for path in paths:
        if path.is_dir():
            items += [Item(f.stem, [f], f) for f in image_files(path)]
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                if not sub.name.startswith(".") and (files := image_files(sub)):
                    items.append(Item(sub.name, files, files[0]))
        elif path.exists():
            items.append(Item(path.stem, [path], path))
        else:
            raise UserError(f"exemplar not found: {path}")
    return items


def checkpoint_items(folder: Path, strict: bool = True) -> list[Item]:
    """Items of generate mode: the checkpoints in ``folder`` (empty if it is one itself)."""
    from generator.checkpoints import WEIGHTS

    if not folder.is_dir() or (folder / WEIGHTS).is_file():
        if strict:
            raise UserError(f"{folder}: not a folder of checkpoints (OUTDIR/run/final, ...)")
        return []
    items = [Item(f.stem, [f]) for f in sorted(folder.glob("*.safetensors"))]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for candidate in (sub, sub / "final"):
            if (candidate / WEIGHTS).is_file():
                items.append(Item(sub.name, [candidate]))
                break
    for item in items:
        config = item.sources[0] / "config.json"
        if config.is_file():
            sources = json.loads(config.read_text()).get("exemplars") or []
            item.exemplar = Path(sources[0]) if sources and Path(sources[0]).is_file() else None
    return items


def is_done(item: Item) -> bool:
    """Every output and its sidecar exist, and the sidecar says the run was not interrupted."""
    for path in item.outputs:
        sidecar = path.with_suffix(".json")
        if not (path.is_file() and sidecar.is_file()):
            return False
        try:
            meta = json.loads(sidecar.read_text())
            if meta.get("interrupted") or meta.get("diverged"):
                return False
        except (OSError, ValueError):
            return False
    return True


def run_batch(cfg, exemplars: list[Path], outdir: Path, overwrite, progress, fit_octaves) -> None:
    """Run a batch (see the module docstring): ``cfg`` is a ``GenerateConfig`` (items: the
    checkpoints in ``cfg.checkpoint``) or a ``SynthConfig`` (items: ``exemplars``)."""
    import torch
    from accelerate import PartialState

    from configs import GenerateConfig

    # 1. Items and their outputs, checked before any work.
    generate = isinstance(cfg, GenerateConfig)
    items = batch_items(generate, cfg, exemplars, outdir)

    # 2. This process's share: accelerate splits the list (one process: all of it).
    # cpu=True lets processes started on a machine without CUDA (accelerate launch
    # --multi_gpu, torchrun) join a gloo group instead of each running alone.
    state = PartialState(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    tag = f"[process {rank + 1}/{world}] " if world > 1 else ""
    if state.num_processes > 1 and cfg.device == "auto":
        cfg = dataclasses.replace(cfg, device=str(state.device))  # one device per process
    show = progress and state.is_main_process
    run = _generate_one(cfg, show) if generate else _optimize_one(cfg, state, show, fit_octaves)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {outdir}: {e.strerror}") from None
    todo = [i for i in items if overwrite or not is_done(i)]
    state.wait_for_everyone()  # every process has the same list before any output appears
    if state.is_main_process:
        say(
            f"batch: {len(items)} items, {len(items) - len(todo)} already done, {world} process(es)"
        )
    failed = []
    with state.split_between_processes(todo) as mine:
        say(f"{tag}items: {', '.join(i.name for i in mine) or '(none)'}", flush=True)
        for n, item in enumerate(mine, 1):
            try:
                run(item, tag)
                say(f"{tag}[{n}/{len(mine)}] wrote {', '.join(map(str, item.outputs))}", flush=True)
            except (UserError, ValueError, RuntimeError, OSError) as e:
                failed.append(item.name)
                say(f"{tag}error: {item.name}: {e}", flush=True)

    # 3. After every process is done: the contact sheet (main process) and the summary.
    state.wait_for_everyone()
    if state.is_main_process:
        done = [i for i in items if all(p.is_file() for p in i.outputs)]
        if done:
            cells = [(i.name, [i.exemplar, i.outputs[0]]) for i in done]
            contact_sheet(cells, outdir / CONTACT_SHEET)
            say(f"wrote {outdir / CONTACT_SHEET} ({len(done)} of {len(items)} items)")
    if failed:
        raise UserError(
            f"{tag}{len(failed)} item(s) failed: {', '.join(failed)}; the rest are written"
        )


def batch_items(generate: bool, cfg, exemplars: list[Path], outdir: Path) -> list[Item]:
    """The batch's items with their output paths, refused before any work when the batch
    cannot run (no folder output, nothing to do, two items with one output name)."""
    if outdir.suffix:
        dirs = [str(p) for p in exemplars if p.is_dir()]
        why = f"{dirs[0]} is a directory, so this is a batch" if dirs else "a batch"
        raise UserError(f"{why}: one PNG per item in a folder; give -o OUTDIR, not {outdir}")
    if generate:
        if cfg.checkpoint is None:
            raise UserError("--mode generate --batch needs --checkpoint FOLDER of checkpoints")
        items = checkpoint_items(Path(cfg.checkpoint))
    else:
        if not exemplars:
            raise UserError("give an exemplar folder or several exemplar images")
        items = exemplar_items(exemplars)
    if not items:
        raise UserError("nothing to do: no images (or checkpoints) found")
    names = [i.name for i in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"several inputs would write the same output name: {', '.join(twice)}")
    for item in items:
        item.outputs = [
            numbered(outdir / f"{item.name}.png", i, cfg.variations) for i in range(cfg.variations)
        ]
    return items


def _optimize_one(cfg, state, show: bool, fit_octaves: bool):
    """A function running one optimize-mode item, with the config resolved once."""
    import torch

    from cli.console import progress_bar
    from cli.memory import check_fits, optimize_advice, optimize_estimate
    from data.images import load_image
    from data.sizes import parse_size
    from losses.objective import build_backbone_for
    from optimize.engine import make_synthesizer

    size = parse_size(cfg.size) if cfg.size else None
    # Options wrong for every item (backbone, weights, layers) stop the batch before any work.
    log = say if state.is_main_process else lambda _: None
    if cfg.objective == "features":
        backbone = build_backbone_for(cfg, cfg.tile, torch.device("cpu"), log)
        log(f"backbone: {backbone.description}")

    def run(item: Item, tag: str) -> None:
        images, sources = [], []
        for path in item.sources:
            try:
                images.append(load_image(path)[0])
                sources.append(str(path))
            except UserError as e:
                if len(item.sources) == 1:
                    raise
                say(f"{tag}skipped: {e}")
        if not images:
            raise UserError(f"no readable image in {item.name}")
        synth = make_synthesizer(images, cfg, log=lambda m: None, fit_octaves=fit_octaves)
        synth.sources = sources  # the sidecar names the files, not the tensors
        out_size = size or tuple(images[0].shape[-2:])
        check_fits(optimize_estimate(synth, out_size), synth.device, optimize_advice(cfg))
        for i, path in enumerate(item.outputs):
            seed = synth.config.seed + i
            with progress_bar(show) as bar:
                steps = synth.level_iterations(out_size)
                task = bar.add_task(path.name, total=sum(steps), loss=None)
                done = [0]

                def on_iter(level, it, x, loss, bar=bar, task=task, done=done):
                    done[0] += 1
                    bar.update(task, completed=done[0], loss=loss)

                result = synth.synthesize(size=size, seed=seed, on_iter=on_iter)
            synth.save(result, path, seed=seed, overwrite=True)
            if result.interrupted:
                say(f"{tag}interrupted: saved {path} as reached; rerun to redo it")
                raise SystemExit(130)
            if result.diverged:
                raise UserError(f"{result.diverged}; {path} holds the last finite image")

    return run


def _generate_one(cfg, show: bool):
    """A function running one generate-mode item (on this process's device)."""
    from cli.generate import run_generate

    def run(item: Item, tag: str) -> None:
        one = dataclasses.replace(cfg, checkpoint=str(item.sources[0]))
        run_generate(one, item.outputs[0], overwrite=True, progress=show)

    return run
