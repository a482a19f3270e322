"""Paired evaluation of a policy against standard noise: the paired summary, prompt-specificity controls, grids."""
