"""Training: streamed pairs data (data.py), the permutation-invariant loss (loss.py) and the
loop with checkpoints, resume and logs (driver.py)."""
