"""``python -m bench.structure``: the default synthesis on each exemplar, judged, resumable."""

import json

import pytest
from typer.testing import CliRunner

from bench.structure import Row, app, summary, table_row
from data.images import save_image
from data.procedural import make


@pytest.mark.slow
def test_run_judges_the_default_and_keeps_finished_rows(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    # the judge's structure measure needs squares (half the exemplar's side) of 64 px
    save_image(make("stripes", 128, seed=1), photos / "tiny.png")
    args = ["--exemplars", photos, "--only", "tiny", "--sizes", "96", "--out", tmp_path / "out"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    row = json.loads(line)
    assert row["name"] == "tiny" and row["kind"] == "photo" and row["size"] == 96
    assert row["start"] in ("blocks", "noise") and row["structure"] > 0 and row["seconds"] > 0
    assert row["recurrence"] > 0 and row["floor_recurrence"] is None  # a photo: no fresh sample
    assert "| tiny | photo | 96 | 0 |" in (tmp_path / "out" / "RESULTS.md").read_text()
    assert "1 of 1 within structure 1.5" in result.output or "over: tiny 96" in result.output
    assert (tmp_path / "out" / "sheet.png").stat().st_size > 1000
    # a second run keeps the finished row instead of synthesizing it again
    again = CliRunner().invoke(app, [str(a) for a in args])
    assert again.exit_code == 0 and "(kept)" in again.output
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, words",
    [(["--only", "nope"], "no exemplar named nope"), (["--sizes", "16"], "at least 24 px")],
)
def test_bad_choice_is_one_line_error(tmp_path, extra, words):
    save_image(make("dots", 48, seed=0), tmp_path / "dots48.png")
    args = ["--exemplars", str(tmp_path), "--out", str(tmp_path / "out"), *extra]
    if "--only" not in extra:
        args += ["--only", "dots48"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and words in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_synth_args_reach_every_run(tmp_path):
    save_image(make("dots", 48, seed=0), tmp_path / "dots48.png")
    args = ["--exemplars", tmp_path, "--out", tmp_path / "out", "--only", "dots48"]
    args += ["--sizes", "48", "--synth-args", "--start sideways"]  # synth.py refuses it
    result = CliRunner().invoke(app, [str(a) for a in args])
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and "synth.py at 48 failed" in last, result.output
    assert "'sideways' is not one of" in last and "Traceback" not in result.output


def test_over_the_target_where_a_fresh_sample_is_too_is_counted_apart():
    def row(name, structure, floor):
        return Row(name, "procedural", 512, 0, 1.0, "noise", structure, 1.0, floor)

    rows = [row("cells", 1.4, 1.46), row("dots", 1.63, 1.67), row("knit", 1.55, None),
            row("stripes", 1.7, 1.6)]  # fmt: skip
    text = summary(rows)
    assert text.startswith("1 of 4 within structure 1.5")
    assert "no worse than a fresh sample of their process: dots 512 s0 1.63 (fresh 1.67)" in text
    assert text.endswith("over: knit 512 s0 1.55, stripes 512 s0 1.70")  # worse than its sample
    assert "(over 1.5, no worse than a fresh sample)" in table_row(rows[1])
    assert "1.55 (over) |" in table_row(rows[2]) and "1.40 |" in table_row(rows[0])
