"""Shared pieces of the binding study (docs/noise_ppo.md, "Binding words to places"): not a script.

- the Shapes relation prompts ("a c1 s1 REL a c2 s2") of a prompt set, and each one's roles;
- the role-layout teacher: a 3 x grid x grid map painting object 1's colour over its role's half
  (left, right, top or bottom) and object 2's colour over the other half, a supervised stand-in
  for what a relation prompt needs;
- ``RoleFeaturePolicy``, the oracle: a linear map from the prompt's (colour, role) and
  (shape, role) one-hots to the mean map. It reads the grammar, so it is a diagnostic of the
  estimator and the budget, never a method: "red on the left" is one feature, active in just the
  prompts that need it.

    python experiments/binding.py --help
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from noiseppo.backends.base import Conditioning
from noiseppo.policy import NoisePolicy
from noiseppo.prompts import load_prompts
from noiseppo.shapes.grammar import COLOURS, SHAPES, parse

ROLES = {"left of": ("left", "right"), "right of": ("right", "left"), "above": ("top", "bottom")}
ROLES["below"] = ("bottom", "top")
ROLE_INDEX = {"left": 0, "right": 1, "top": 2, "bottom": 3}


def relation_prompts(name: str) -> list[str]:
    """The prompts of ``name`` (a set or file) with two objects and a spatial relation."""
    return [p for p in load_prompts(name) if parse(p).relation is not None]


def roles(prompt: str) -> list[tuple[str, str, str]]:
    """(colour, shape, role) of each object of a relation prompt."""
    parsed = parse(prompt)
    return [
        (group.colour, group.shape, role) for group, role in zip(parsed.groups, ROLES[parsed.relation], strict=True)
    ]


def half(role: str, grid: int) -> torch.Tensor:
    """A grid x grid mask of the half of the image a role puts its object in."""
    mask, h = torch.zeros(grid, grid), grid // 2
    {"left": mask[:, :h], "right": mask[:, h:], "top": mask[:h, :], "bottom": mask[h:, :]}[role].fill_(1)
    return mask


def role_teacher(prompt: str, grid: int = 8) -> torch.Tensor:
    """The role-layout teacher of a relation prompt: (3, grid, grid), colours in [-1, 1]."""
    out = torch.zeros(3, grid, grid)
    for colour, _, role in roles(prompt):
        rgb = torch.tensor(COLOURS[colour], dtype=torch.float32) / 255 * 2 - 1
        out += rgb[:, None, None] * half(role, grid)[None]
    return out


FEATURES = len(COLOURS) * len(ROLE_INDEX) + len(SHAPES) * len(ROLE_INDEX)


def role_features(prompt: str) -> torch.Tensor:
    """The oracle's input: the (colour, role) and (shape, role) one-hots of a relation prompt."""
    x = torch.zeros(FEATURES)
    colours, shapes = list(COLOURS), list(SHAPES)
    for colour, shape, role in roles(prompt):
        x[colours.index(colour) * 4 + ROLE_INDEX[role]] = 1
        x[len(colours) * 4 + shapes.index(shape) * 4 + ROLE_INDEX[role]] = 1
    return x


class RoleFeaturePolicy(NoisePolicy):
    """The oracle: μ(c) = upsample(Σ_f x_f(c) W_f + b) from the prompt's role features; σ = 1.

    A ``NoisePolicy`` for the trainer (its sampling, log-probability and evaluation paths), whose
    mean ignores the encoder and reads the prompt's text instead. Its maps start at zero, so the
    untrained oracle is N(0, I), as every policy is. Only ``maps`` and ``bias`` are trained
    (``trained``); the inherited layers are unused."""

    def __init__(self, **config) -> None:
        super().__init__(**config)
        grid, channels = self.config.grid, self.latent_shape[0]
        self.maps = nn.Parameter(torch.zeros(FEATURES, channels, grid, grid))
        self.bias = nn.Parameter(torch.zeros(1, channels, grid, grid))

    @property
    def trained(self) -> list[nn.Parameter]:
        return [self.maps, self.bias]

    def _forward(self, conditioning: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([role_features(p) for p in conditioning.prompts]).to(self.maps)
        cells = torch.einsum("nf,fchw->nchw", x, self.maps) + self.bias
        mean = F.interpolate(cells, size=self.latent_shape[1:], mode="bilinear", align_corners=False)
        return mean, torch.zeros_like(mean)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("binding.py holds the study's shared pieces; run capacity_check.py or binding_study.py")
