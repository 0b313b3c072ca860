"""Temporal context: official clip windows, centred windows and per-face frame streams."""
