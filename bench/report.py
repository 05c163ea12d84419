"""Markdown tables from the benchmark's results dict (``results.json``)."""

from __future__ import annotations

import math

from bench.speed import STAGES
from judge import DISTANCES

QUALITY_COLUMNS = (*DISTANCES, "copy", "seam", "diversity", "score")
MEANS = ("copy", "seam", "diversity")  # averaged; the distance ratios get a geometric mean


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def section(heading: str, notes: list[str], header=None, rows=()) -> list[str]:
    """Lines of a heading, its paragraphs and its table (if a ``header`` is given), each
    followed by a blank line."""
    out = [line for text in (heading, *notes) for line in (text, "")]
    return out + ([table(header, rows), ""] if header else [])


def speed_section(r: dict) -> list[str]:
    note = (
        "Naive = the same objective written the plain way (whole VGG trunk every call, exemplar "
        "targets recomputed every call, `torch.optim.LBFGS()` defaults); speedup = naive / ours, "
        "both measured alternately in this run. Exemplar: " + r["speed_exemplar"] + ". "
        f"Torch threads: {r['machine']['torch threads']}. Below ~50 ms an evaluation is "
        "dominated by thread hand-offs: on the shared 2-core machine, 128 px at 2 threads "
        "gave 0.024-0.076 s (ours) and 0.015-0.062 s (naive) in three runs, at 1 thread "
        "0.014-0.019 s and 0.018-0.034 s; compare small sizes at OMP_NUM_THREADS=1."
    )
    keys = ("preset", "size", "octaves", "ours_s", "naive_s", "speedup")
    out = section(
        "## Optimize mode: seconds per L-BFGS evaluation (median), ours vs naive",
        [note],
        ["preset", "px", "octaves", "ours s", "naive s", "speedup"],
        [[e[k] for k in keys] for e in r["per_evaluation"]],
    )
    if r.get("to_loss"):
        out += section(
            f"### Seconds to reach {r['to_loss'][0]['fraction']:g} x the start loss "
            "(from the same seeded noise)",
            ["'>' marks a run stopped at the time cap before reaching the target."],
            ["preset", "px", "start loss", "ours s", "naive s", "speedup"],
            [_race_row(e) for e in r["to_loss"]],
        )
    return out


def _race_row(e: dict) -> list:
    """A time-to-loss row: '>' marks a time cut at the cap, and a speedup that is then only a
    bound ('>' when ours got there, '~' when neither did)."""
    capped = {True: "", False: ">"}
    ratio = _f(e["naive_s"] / e["ours_s"])
    if not (e["ours_reached"] and e["naive_reached"]):
        ratio = (">" if e["ours_reached"] else "~") + ratio
    mine = capped[e["ours_reached"]] + _f(e["ours_s"])
    theirs = capped[e["naive_reached"]] + _f(e["naive_s"])
    return [e["preset"], e["size"], e["start_loss"], mine, theirs, ratio]


def stages_section(r: dict) -> list[str]:
    out = section(
        f"## Where the time goes (ours, {r['stage_size']} px, median seconds per evaluation)",
        [
            "optimizer = median period between evaluations inside an L-BFGS run minus the "
            "median evaluation (forward + backward) measured here: the quasi-Newton step, line "
            "search bookkeeping and float64 copies."
        ],
        ["preset", *STAGES, "optimizer"],
        [[e["preset"], *[e[k] for k in STAGES], e["optimizer"]] for e in r["stages"]],
    )
    peak = r["matmul_gflops"]
    note = (
        f"Matmul peak (fp32 `torch.mm` 2048^3, median of 5, {r['machine']['torch threads']} "
        f"threads): **{peak:.1f} GFLOP/s**. FLOPs counted by "
        "`torch.utils.flop_counter.FlopCounterMode`. Ratios use the peak measured just before "
        "each row where the run recorded one (the load on a shared machine changes by the "
        "minute); a ratio above 1 means the load fell between the two measurements."
    )
    return out + section(
        "## Backbone throughput against this machine's matmul peak",
        [note],
        ["preset", "GFLOP fwd", "GFLOP fwd+bwd", "fwd GFLOP/s", "fwd / peak", "fwd+bwd / peak"],
        [
            [e["preset"], e["gflop_forward"], e["gflop_total"], e["fwd_gflops"]]
            + [
                e["fwd_gflops"] / e.get("peak_gflops", peak),
                e["all_gflops"] / e.get("peak_gflops", peak),
            ]
            for e in r["stages"]
        ],
    )


def generator_section(r: dict) -> list[str]:
    t = r["training"]
    if "steps_per_s" in t:  # results of a run before both precisions were measured
        t = {"no": t}
    first = next(iter(t.values()))
    speeds = ", ".join(
        f"{'fp32' if p == 'no' else p} **{v['steps_per_s']:.2f} steps/s**" for p, v in t.items()
    )
    if "no" in t and "bf16" in t:
        speeds += f" (bf16 / fp32: {t['bf16']['steps_per_s'] / t['no']['steps_per_s']:.2f}x)"
    return section(
        "## Generator",
        [
            f"Training ({first['config']}): {speeds}; medians of {first['n']} steps after "
            f"{first['warmup']} warm-up, `--mixed-precision no` and `bf16`.",
            "Generation (`synth.py --mode generate --precision P` in a child process, from the "
            "fp32 run's checkpoint; wall includes start-up; peak RSS of the child):",
        ],
        ["output", "precision", "wall s", "render+PNG s", "peak RSS GiB", "runs"],
        [
            [f"{key.split()[0]}x{key.split()[0]}", g.get("precision", "fp32"), g["wall_s"],
             g["render_s"], g["peak_rss"] / 2**30, g["n"]]
            for key, g in r["generation"].items()
        ],
    )  # fmt: skip


def race_section(r: dict) -> list[str]:
    first = r["race"][0]
    return section(
        "## Time to quality: optimize mode's default, old path against new",
        [
            f"`synth.py {first['exemplar']} --size WxH --seed 0` run by commit "
            f"{first['old_rev']} (old) and by this one (new), one after the other, wall seconds "
            "with start-up. Judge metrics averaged over 4 squares of the output (1.0 = a real "
            "crop). The new path reaches the old one's quality if its score and structure are "
            "each at most 1.1x the old one's; then time to quality is its wall time over the "
            "old one's."
        ],
        ["size", "old s", "new s", "old score", "new score", "old structure", "new structure",
         "quality reached", "new / old time"],
        [
            [row["size"], row["old"]["wall_s"], row["new"]["wall_s"], row["old"]["score"],
             row["new"]["score"], row["old"]["structure"], row["new"]["structure"],
             "yes" if row["reached"] else "no", row["ratio"] if row["reached"] else None]
            for row in r["race"]
        ],
    )  # fmt: skip


def quality_section(r: dict) -> list[str]:
    out = section(
        "## Quality (judge: Gabor statistics, spectra, colour; not the objective)",
        [
            "Distances to the exemplar divided by those of real crops of it (1.0 = as close as "
            "a real crop; lower is better): local = Gabor energy statistics at full and 1/2 "
            "resolution; coarse = the same at 1/8 and 1/16; structure = correlograms and "
            "cross-scale phase of fixed filters z-scored against real crops (judge.structure); "
            "lowfreq = log radial power below 1/8 cycle/px; highfreq = log ratio of the power "
            "fraction above 1/4 cycle/px; colour = RGB sliced Wasserstein; mean_shift = mean "
            "colour difference. copy = fraction of 8x8 patches that are near-verbatim exemplar "
            "patches (a real crop is 1). seam = jump across the wrap / interior steps (1 = tiles "
            "seamlessly; only the generator and the painter are made tileable here). diversity "
            "= their samples' pairwise difference / real crops'. score = geometric mean of the "
            "seven distances."
        ],
    )
    out += section(
        "### Mean over exemplars (geometric mean of each ratio; copy, seam, diversity: mean)",
        [],
        ["method", *QUALITY_COLUMNS],
        _mean_rows(r["quality"]),
    )
    for name, rows in r["quality"].items():
        body = [[m, *[v.get(k) for k in QUALITY_COLUMNS]] for m, v in rows["metrics"].items()]
        out += section(f"### {name}", [], ["method", *QUALITY_COLUMNS], body)
        if rows.get("sheet"):
            out += [f"Contact sheet: `{rows['sheet']}`", ""]
    return out


def _mean_rows(quality: dict) -> list[list]:
    """Per method, each column's mean over exemplars; sorted by score, best first."""
    rows = []
    for m in next(iter(quality.values()))["metrics"]:
        row = [m]
        for k in QUALITY_COLUMNS:
            vals = [q["metrics"][m].get(k) for q in quality.values()]
            vals = [v for v in vals if v is not None]
            if not vals:
                row.append(None)
            elif k in MEANS:
                row.append(sum(vals) / len(vals))
            else:
                row.append(math.exp(sum(math.log(max(v, 1e-12)) for v in vals) / len(vals)))
        rows.append(row)
    return sorted(rows, key=lambda row: row[-1])


def render(r: dict) -> str:
    machine = "\n".join(f"- {k}: {v}" for k, v in r["machine"].items())
    state = "" if r.get("complete") else " (incomplete: the run was still going or was stopped)"
    out = ["# texsynth benchmark", "", f"Command: `{r['command']}`", ""]
    out += ["Machine:", "", machine, ""]
    out += [f"Wall time of this run: {r['wall_s'] / 60:.1f} min{state}.", ""]
    if "per_evaluation" in r:
        out += speed_section(r)
    if r.get("stages"):
        out += stages_section(r)
    if r.get("generation"):
        out += generator_section(r)
    if r.get("quality"):
        out += quality_section(r)
    if r.get("race"):
        out += race_section(r)
    return "\n".join(out) + "\n"
