"""Whole jobs a user asks for: score a video or live source and write its outputs."""
