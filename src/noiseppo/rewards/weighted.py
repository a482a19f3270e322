"""Weighted sums of rewards: ``"0.5*jpeg_compressibility+1.0*shapes"``.

Terms are separated by ``+``; each is ``WEIGHT*NAME`` or a bare ``NAME`` (weight 1).
Weights are plain decimals (``-0.5``, ``2``, ``.25``; no exponents); a term may be any
other reward name, ``module:function`` and ``http://...`` included (a URL term must not
contain ``+`` or ``*``). Every term's scores are checked on their own before they are added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from noiseppo.errors import UserError

if TYPE_CHECKING:
    import torch

WEIGHT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+))\s*\*\s*(.*?)\s*$")


def is_weighted(name: str) -> bool:
    return "+" in name or "*" in name


class WeightedSum:
    """Σ weight × reward, each term checked by ``score_batch``."""

    def __init__(self, spec: str, build: Callable[[str], Any]):
        self.terms: list[tuple[float, str, Any]] = []
        for text in spec.split("+"):
            match = WEIGHT.match(text)
            weight, name = (float(match[1]), match[2]) if match else (1.0, text.strip())
            if not name or is_weighted(name):
                raise UserError(
                    f"reward '{spec}': cannot read the term '{text.strip()}' (write WEIGHT*NAME+WEIGHT*NAME)"
                )
            self.terms.append((weight, name, build(name)))
        sizes = {tuple(s) for _, _, r in self.terms if (s := getattr(r, "image_size", None)) is not None}
        if len(sizes) > 1:
            raise UserError(f"reward '{spec}': its terms read images of different sizes {sorted(sizes)}")
        self.image_size = sizes.pop() if sizes else None

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        from noiseppo.rewards.scoring import score_batch

        total = None
        for weight, name, reward in self.terms:
            try:
                scores = weight * score_batch(reward, images, prompts)
            except UserError as e:
                raise UserError(f"{name}: {e}") from e
            total = scores if total is None else total + scores
        return total
