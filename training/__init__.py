"""What every training run shares: the run folder, accelerate, checkpoints, the step loop."""
