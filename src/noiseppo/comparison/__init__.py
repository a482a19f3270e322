"""``noiseppo compare``: every baseline and Noise PPO on the same held-out prompts, seeds and reward,
on any backend (docs/baselines.md).

- ``config``: ``CompareConfig``, the run's settings, and ``prepare``, every check made before
  anything loads;
- ``methods``: the method grammar and ``KINDS``, each kind's pattern, runner, phase and backends;
- ``runner``: ``run_compare``, one row per method;
- ``stats``: each row's figures and the cross-method summaries; ``schema``: compare.json's keys;
- ``plot`` and ``table``: compare.png and the printed table.
"""
