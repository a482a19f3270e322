"""``noiseppo reward-server``: serve a reward over HTTP."""

from __future__ import annotations

import argparse
import os
import sys

from noiseppo.cli.arguments import int_at_least, positive_number


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noiseppo.rewards.server import DEFAULT_MAX_BODY_MB, DEFAULT_QUEUE_TIMEOUT, DEFAULT_READ_TIMEOUT

    serve = sub.add_parser(
        "reward-server",
        help="serve a reward over HTTP (the protocol of noiseppo.rewards.http)",
        description="Serve a reward over HTTP, so that a reward model can live in its own environment. "
        'POST {"prompts": [...], "images": [base64 PNG, ...]} to any path; the answer is {"scores": [...]}.',
    )
    serve.add_argument("--reward", required=True, help="a reward name, as for train (noiseppo list rewards)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int_at_least(0), default=8000, help="port (0: any free port)")
    serve.add_argument(
        "--token",
        help="require this bearer token (default: $NOISEPPO_REWARD_TOKEN, which, unlike a flag, other users "
        "cannot read in the process list); without one, a server off loopback warns",
    )
    serve.add_argument(
        "--max-body-mb",
        type=positive_number,
        default=DEFAULT_MAX_BODY_MB,
        help="largest request body in MiB (default %(default)g; 413 beyond)",
    )
    serve.add_argument(
        "--read-timeout",
        type=positive_number,
        default=DEFAULT_READ_TIMEOUT,
        help="seconds a client has to send its whole request (default %(default)g; 408 beyond)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=positive_number,
        default=DEFAULT_QUEUE_TIMEOUT,
        help="seconds a request waits for the reward model while others are scored (default %(default)g; 503 beyond, "
        "which the client retries)",
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noiseppo.rewards import get_reward
    from noiseppo.rewards.base import redacted
    from noiseppo.rewards.http import TOKEN_ENV, checked_token
    from noiseppo.rewards.server import is_loopback, make_server

    # Checked before the reward loads (seconds for a large model), and never printed.
    token = checked_token(args.token, "--token")
    if token is None:
        token = checked_token(os.environ.get(TOKEN_ENV), TOKEN_ENV)
    reward = get_reward(args.reward)
    server = make_server(
        reward,
        args.host,
        args.port,
        token=token,
        max_body_mb=args.max_body_mb,
        read_timeout=args.read_timeout,
        queue_timeout=args.queue_timeout,
    )
    host, port = server.server_address[:2]
    if token is None and not is_loopback(args.host):
        print(
            f"noiseppo: warning: serving on {args.host} without a token: anyone who can reach port {port} can "
            f"use this reward (give --token or set {TOKEN_ENV})",
            file=sys.stderr,
            flush=True,
        )
    needs = "bearer token required; " if token else ""
    shown = redacted(args.reward)  # a reward URL's fragment may hold its token
    print(f"serving reward '{shown}' at http://{host}:{port}/ ({needs}GET /health; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
