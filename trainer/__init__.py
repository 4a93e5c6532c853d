"""Trainer: evaluation on standard protocols, threshold calibration and fine-tuning."""
