"""What a run produces: the per-frame table (CSV/JSON) and its pictures."""
