"""Rendering: seed streams, render specifications and batches, scoring overlapped with rendering, render-and-score."""
