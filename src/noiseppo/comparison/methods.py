"""The methods of ``noiseppo compare --methods`` (comma-separated) and what each kind of method is.

* ``standard``: the frozen model with N(0, I) noise (the reference every Δ is paired with);
* ``best-of-N``: N standard-noise candidates per image, the reward picks one (``noiseppo.baselines.best_of_n``);
  N renders and N reward calls per image, and the reward at inference is an oracle;
* ``search@B``: per-prompt black-box search (``noiseppo.baselines.search``) with B renders per prompt, run
  *on the held-out prompts themselves* (a test-time method), then evaluated on fresh seeds;
* ``noise-ppo``: trains the preset (``noiseppo train``) in this run, then its policy samples;
  ``noise-ppo+best-of-N``: best-of-N of that policy's samples;
* ``noise-ppo-blind``: the same trainer, budget and seed with the prompt hidden from the policy
  (``prompt_blind``): the control that says what conditioning on the prompt adds;
* ``golden-top-K``: the K noises with the best mean over a shared-noise matrix of the preset's
  training prompts (``noiseppo golden``'s choice: ``--golden-noises`` noises x every 8th training
  prompt); image j of every held-out prompt uses golden noise j mod K. A prompt-generic fix at 1x
  inference;
* ``policy:NAME``: a shipped or saved policy, not trained here (e.g. ``policy:shapes-steps4``, ``policy:runs/x``);
* ``ddpo`` / ``ddpo@I``: DDPO at the preset's budget or for I iterations, evaluated with its tuned
  weights: a copy of the Shapes denoiser (``noiseppo.baselines.ddpo``, DDIM η = 0, the same initial
  noise) or LoRA on a Stable Diffusion pipeline's U-Net (``noiseppo.baselines.ddpo_diffusers``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from noiseppo.errors import UserError


@dataclass(frozen=True)
class Kind:
    """One kind of method."""

    pattern: str
    """The method's name as a regular expression; its one group, if any, is the method's argument."""
    runner: str
    """The ``noiseppo.comparison.runner.Comparison`` method that adds the row."""
    phase: int
    """Kinds run in phase order (training first, so that a trainer's peak memory is its own); the
    rows come out in ``--methods`` order whatever order they ran in."""
    counted: bool = False
    """The argument is a count, refused below 1."""
    trains: bool = False
    """It trains (or chooses) on the preset's training prompts."""
    backends: tuple[str, ...] = ()
    """The backends the kind runs on, with why (``why``); empty: every backend."""
    why: str = ""


KINDS: dict[str, Kind] = {
    "standard": Kind(r"standard", "standard_row", 1),
    "best-of": Kind(r"best-of-(\d+)", "best_of_row", 3, counted=True),
    "search": Kind(r"search@(\d+)", "search_row", 5, counted=True),
    "noise-ppo": Kind(r"noise-ppo", "trained_row", 0, trains=True),
    "noise-ppo-blind": Kind(r"noise-ppo-blind", "trained_row", 0, trains=True),
    "golden": Kind(r"golden-top-(\d+)", "golden_row", 1, counted=True, trains=True),
    "noise-ppo+best-of": Kind(r"noise-ppo\+best-of-(\d+)", "policy_best_of_row", 4, counted=True, trains=True),
    "policy": Kind(r"policy:(.+)", "saved_policy_row", 1),
    "ddpo": Kind(
        r"ddpo(?:@(\d+))?",
        "ddpo_row",
        2,
        trains=True,
        backends=("shapes", "diffusers"),
        why="DDPO tunes a copy of the Shapes denoiser or LoRA on a Stable Diffusion U-Net, and samples with "
        "DDIM's Gaussian steps, which the flow-matching models (sd3, flux) do not take",
    ),
}
"""Each kind of method: its pattern, the runner that adds its row, its phase, its backends."""
KNOWN = (
    "standard, best-of-N, search@B, noise-ppo, noise-ppo+best-of-N, noise-ppo-blind, golden-top-K, policy:NAME, "
    "ddpo, ddpo@ITERATIONS"
)


@dataclass
class Method:
    name: str
    kind: str
    arg: str | None


def parse_methods(text: str) -> list[Method]:
    """The methods of ``--methods``; an unknown or malformed one is refused by name."""
    methods = []
    for name in (m.strip() for m in text.split(",")):
        for kind, spec in KINDS.items():
            match = re.fullmatch(spec.pattern, name)
            if match:
                arg = match.group(1) if match.groups() else None
                if spec.counted and int(arg) < 1:
                    raise UserError(f"--methods: '{name}' needs a count >= 1")
                methods.append(Method(name, kind, arg))
                break
        else:
            raise UserError(f"--methods: unknown method '{name}' (known: {KNOWN})")
    if len({m.name for m in methods}) != len(methods):
        raise UserError("--methods: a method is named twice")
    return methods


def check_backend(methods: list[Method], backend: str) -> None:
    """Refuse a method whose kind does not run on ``backend``: one line saying which and why."""
    for m in methods:
        kind = KINDS[m.kind]
        if kind.backends and backend not in kind.backends:
            runs_on = " and ".join(kind.backends)
            raise UserError(f"--methods: '{m.name}' runs on --backend {runs_on}, not {backend}: {kind.why}")
