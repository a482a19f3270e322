"""The self-contained HTML page of runs, evaluations and comparisons."""
