"""Turning a tracked face box into the model's input: alignment, crop, normalisation."""
