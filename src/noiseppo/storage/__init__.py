"""Runs and weights on disk: checkpoints, atomic output folders, safe loading, the shipped policies, provenance."""
