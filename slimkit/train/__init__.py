"""Training and evaluation: the engine, tasks (loss and metric), metrics."""
