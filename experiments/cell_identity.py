"""How different the policy's cells are at initialisation, for two query scales.

    python experiments/cell_identity.py [--query-stds 0.02,1.0]

The policy's cells differ only through their learned queries. This builds an untrained
``NoisePolicy`` for the embedded model per query scale and measures, on every 20th
``shapes-train`` prompt, the features each cell hands to the readout: their variance across
the cells of one prompt (what lets the mean vary in space) against the variance of the
cell-averaged features across prompts (what lets it vary with the prompt). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from noiseppo.policy import NoisePolicy


def cell_features(policy: NoisePolicy, conditioning) -> torch.Tensor:
    """The (N, cells, width) features the readout reads, as ``NoisePolicy._forward`` makes them."""
    keys = policy.token_in(conditioning.token_states)
    q = policy.queries[None] + policy.pooled_in(conditioning.pooled)[:, None]
    h = q + policy._attend(policy.norm(q), keys, ~conditioning.mask.bool())
    return h + policy.mlp(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--query-stds", default="0.02,1.0")
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.backends import get_backend
    from noiseppo.policy import NoisePolicy
    from noiseppo.prompts import load_prompts

    backend = get_backend("shapes", None, "default", "cpu", "float32")
    conditioning = backend.encode(load_prompts("shapes-train")[::20])
    rows = []
    for std in (float(s) for s in args.query_stds.split(",")):
        torch.manual_seed(0)
        policy = NoisePolicy.for_backend(backend, query_std=std)
        with torch.no_grad():
            h = cell_features(policy, conditioning)
        within = float(h.var(1).mean())  # across the cells of one prompt
        across = float(h.mean(1).var(0).mean())  # across prompts, of the cell average
        rows.append({"query_std": std, "var_across_cells": within, "var_across_prompts": across,
                     "ratio": within / across})  # fmt: skip
        print(f"query_std {std}: across cells {within:.2e}, across prompts {across:.2e}, ratio {within / across:.3f}")
    print(json.dumps({"prompts": len(conditioning), "rows": rows}))


if __name__ == "__main__":
    main()
