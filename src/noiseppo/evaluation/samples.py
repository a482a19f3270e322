"""What ``noiseppo sample`` writes: each image, its row of ``samples.jsonl`` and the grid pages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from noiseppo.evaluation.grid import Block, Cell, grid_pages, save_pages
from noiseppo.images import to_pil
from noiseppo.sampling.render import Sample


def image_name(k: int) -> str:
    """The file of the ``k``-th image, relative to the output folder."""
    return f"images/{k:04d}.png"


def sample_rows(samples: Sequence[Sample], settings: dict, verdicts: dict[str, np.ndarray] | None) -> list[dict]:
    """One ``samples.jsonl`` row per sample: its image file, prompt and seed, the render ``settings``
    (steps, guidance; the policy and its mode where one drew the noise) and, with the verifier's
    ``verdicts``, whether it is correct and its partial score (4 decimals)."""
    rows = []
    for k, s in enumerate(samples):
        row = {"file": image_name(k), "prompt": s.prompt, "seed": s.seed, **settings}
        if verdicts is not None:
            row.update(correct=bool(verdicts["correct"][k]), partial=round(float(verdicts["partial"][k]), 4))
        rows.append(row)
    return rows


def sample_blocks(
    samples: Sequence[Sample], images: Sequence[Image.Image], verdicts: dict[str, np.ndarray] | None
) -> list[Block]:
    """One grid block per prompt (samples come prompt by prompt), each image labelled with its
    sample index and, with ``verdicts``, the verifier's verdict and partial score."""
    blocks: list[Block] = []
    for k, (s, image) in enumerate(zip(samples, images, strict=True)):
        cell = Cell(image, f"sample {s.sample_index}")
        if verdicts is not None:
            cell.correct, cell.score = bool(verdicts["correct"][k]), float(verdicts["partial"][k])
        if k == 0 or samples[k - 1].prompt_index != s.prompt_index:
            blocks.append(Block(s.prompt, []))
        blocks[-1].cells.append(cell)
    return blocks


def samples_title(settings: dict, seed: int) -> str:
    """The grid's title line: which noise (standard, or which policy in which mode) at which settings."""
    policy = settings.get("policy")
    noise = f"policy {policy} ({settings['policy_mode']})" if policy else "standard noise (no policy)"
    return f"{noise}, {settings['steps']} steps, guidance {settings['guidance']:g}, seed {seed}"


def write_samples(
    folder: Path, samples: Sequence[Sample], settings: dict, seed: int, verdicts: dict[str, np.ndarray] | None
) -> str:
    """Write ``images/NNNN.png``, ``samples.jsonl`` (``sample_rows``) and the grid pages into
    ``folder``; returns the grid pages' names, as ``save_pages`` gives them."""
    (folder / "images").mkdir()
    images = [to_pil(s.image) for s in samples]
    for k, image in enumerate(images):
        image.save(folder / image_name(k))
    rows = sample_rows(samples, settings, verdicts)
    (folder / "samples.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return save_pages(
        grid_pages(sample_blocks(samples, images, verdicts), samples_title(settings, seed)), folder, "grid"
    )
