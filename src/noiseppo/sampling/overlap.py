"""Scoring overlapped with rendering: the reward of chunk i runs while chunk i+1 renders.

A black-box reward (a CLIP model, a scorer behind ``noiseppo reward-server``, a VLM judge)
can cost as much as the frozen model's sampling. Scored one chunk after another, training
then runs at half the sampling speed. Here the chunks are rendered on the calling thread,
as the iterator hands them out, and scored on one background thread, in order, with at most
``in_flight`` scorings waiting behind the render: a bounded queue, so a slow reward cannot
pile up rendered images.

What changes is only *when* a reward runs, not what it sees: the scores come back in chunk
order, each chunk's reward sees the same images and prompts as without overlap, and one
thread scores every chunk, so a reward is never called twice at once. The reward's own
exceptions (a ``UserError`` for a wrong count, an HTTP failure, a bug) reach the caller
unchanged, at most one chunk later than without overlap. No thread outlives the call: the
worker is joined on success, on an error and on Ctrl-C.

With one chunk per call (``render_batch`` at least the batch) there is nothing to overlap.
With n chunks the last one's reward still runs after all rendering, so the best ratio of
scoring-and-rendering to rendering alone is about n / (n + 1) for a reward as slow as the
model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

B = TypeVar("B")
R = TypeVar("R")

THREAD_NAME = "noiseppo-score"
"""Name prefix of the scoring thread (the tests look for leftovers by it)."""


def score_while_rendering(
    batches: Iterable[B], score: Callable[[B], R], overlap: bool = True, in_flight: int = 1
) -> list[R]:
    """``[score(b) for b in batches]``, with each ``score`` running while the next batch is made.

    ``batches`` is consumed on the calling thread (iterating it renders), ``score`` runs on one
    background thread. ``overlap=False`` is the plain sequential loop.
    """
    if not overlap:
        return [score(batch) for batch in batches]
    if in_flight < 1:
        raise ValueError(f"in_flight must be >= 1, got {in_flight}")
    results: list[R] = []
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
    try:
        for batch in batches:
            while len(pending) >= in_flight:
                results.append(pending.popleft().result())
            pending.append(pool.submit(score, batch))
        while pending:
            results.append(pending.popleft().result())
    finally:
        # On an error or Ctrl-C: drop what has not started, wait for the call in progress.
        pool.shutdown(wait=True, cancel_futures=True)
    return results
