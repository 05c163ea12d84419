"""What the editing tests (repair, expand, stacks, remake) share: quick patch settings and a
CLI runner."""

from typer.testing import CliRunner

import synth

# a tiny pyramid: coarsest 16 px, few steps
QUICK = ["--coarsest", "16", "--coarse-iterations", "24", "--iterations", "10", "--no-progress"]
FAST = {"coarsest": 16, "coarse_iterations": 24, "iterations": 10}


def run(args):
    """``synth.py ARGS`` in process -> (exit code, output)."""
    result = CliRunner().invoke(synth.app, [str(a) for a in args])
    return result.exit_code, result.output
