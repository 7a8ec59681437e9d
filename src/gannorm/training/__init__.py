"""Training: the trainer, run folders, checkpoints, EMA, logging and sample grids."""
