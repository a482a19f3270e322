"""Load on the reward server: concurrent clients on loopback, every answer checked.

    python benchmarks/reward_server.py [--clients 4] [--requests 50] [--images 64]
                                       [--reward shapes+jpeg_incompressibility]

Starts ``noiseppo reward-server`` in a subprocess with a bearer token, as a user would, then
``--clients`` threads each send ``--requests`` batches of ``--images`` Shapes scenes through
``HttpReward``, the trainer's own client (so the latency includes encoding the PNGs). Each
image goes with a prompt drawn at random, so the scores differ from image to image, and
every batch is a fresh random draw from a pool of scenes, so an answer in the wrong order
or for another request cannot match. Every answer must equal the reward's own scores of the
same pixels, computed here before the clock starts. Reports the p50 and p99 latency per
request, the throughput, the server's own time per request (its log) and its peak RSS. The
last line is one JSON object; the exit status is 1 unless every request got its scores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

POOL = 512
"""Scenes the requests are drawn from."""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0-1) of ``values``, linearly interpolated (numpy's default)."""
    return float(np.quantile(values, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=50, help="per client")
    ap.add_argument("--images", type=int, default=64, help="per request")
    ap.add_argument("--reward", default="shapes+jpeg_incompressibility")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.rewards import get_reward
    from noiseppo.rewards.http import TOKEN_ENV, HttpReward
    from noiseppo.rewards.scoring import score_batch
    from noiseppo.shapes.grammar import all_prompts
    from noiseppo.shapes.render import render_scene

    rng = np.random.default_rng(args.seed)
    texts = [p.text for p in all_prompts()]
    scenes = [render_scene(texts[rng.integers(len(texts))], int(rng.integers(2**31)))[0] for _ in range(POOL)]
    pool = torch.from_numpy(np.stack([np.asarray(s) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    prompts = [texts[i] for i in rng.integers(len(texts), size=POOL)]  # mostly not the scene's own
    expected = score_batch(get_reward(args.reward), pool, prompts)
    batches = [
        [rng.permutation(POOL)[: args.images] for _ in range(args.requests)] for _ in range(args.clients)
    ]  # fmt: skip

    os.environ[TOKEN_ENV] = secrets.token_urlsafe()  # the server's and the client's
    noiseppo = Path(sys.executable).parent / "noiseppo"
    log = Path(tempfile.mkdtemp()) / "server.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(noiseppo), "reward-server", "--reward", args.reward, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0] + "score"
        latencies: list[float] = []
        failures: list[str] = []

        def client(mine: list[np.ndarray]) -> None:
            reward = HttpReward(url)
            for indices in mine:
                start = time.perf_counter()
                try:
                    scores = reward(pool[indices], [prompts[i] for i in indices])
                except Exception as e:  # counted and reported: the figure is how many got through
                    failures.append(f"{type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - start)
                if not torch.equal(scores, expected[indices]):
                    failures.append("scores differ from the reward's own")

        threads = [threading.Thread(target=client, args=(mine,)) for mine in batches]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        peak = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{server.pid}/status").read_text())
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = [float(m) for m in re.findall(r'"POST /score" 200, .* images, (\d+) ms', log.read_text())]
    total = args.clients * args.requests
    result = {
        "clients": args.clients,
        "requests": total,
        "images_per_request": args.images,
        "reward": args.reward,
        "answered_with_right_scores": len(latencies) - sum(f.startswith("scores differ") for f in failures),
        "failures": len(failures),
        "distinct_scores_in_pool": len(set(expected.tolist())),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1) if latencies else None,
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
        "max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "server_p50_ms": statistics.median(served) if served else None,
        "images_per_s": round(len(latencies) * args.images / wall, 1),
        "wall_s": round(wall, 2),
        "server_peak_rss_mb": round(int(peak[1]) / 1024, 1) if peak else None,
    }
    for failure in sorted(set(failures))[:5]:
        print(f"failure: {failure}", file=sys.stderr)
    print(json.dumps(result))
    sys.exit(0 if result["answered_with_right_scores"] == total and not failures else 1)


if __name__ == "__main__":
    main()
