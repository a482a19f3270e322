"""Rewards served by another process over HTTP: the protocol and its client.

Protocol: ``POST`` to the reward's URL a JSON body
``{"prompts": [str, ...], "images": [base64 PNG, ...]}`` (one prompt per image, 8-bit RGB);
the answer is ``{"scores": [float or null, ...]}``, one per image, in order (null is NaN: a
failed image). An error is any non-2xx status, ideally with ``{"error": "one line"}``. A
server that wants a token reads it from ``Authorization: Bearer TOKEN``.

The client waits ``timeout`` seconds per request and tries ``retries`` more times after a
time-out, a refused or dropped connection, or a 408, 429 or 5xx answer (1 s, 2 s, 4 s ...
apart, at most 30 s); any other 4xx answer is the request's fault and is not retried. A
retry sends the same whole batch again and the answer replaces nothing but itself, so a
retried batch is scored once. Defaults: 60 s and 2 retries. On the command line they go in
the URL's fragment, which is never sent to the server:
``http://127.0.0.1:8000/score#timeout=120&retries=0``; so does the token (``#token=...``),
unless it comes from ``NOISEPPO_REWARD_TOKEN``. No message of this module shows the fragment.

``noiseppo reward-server --reward NAME`` serves any reward this package can build by this
protocol (``noiseppo.rewards.server``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urldefrag

from noiseppo.errors import UserError, error_line, first_line
from noiseppo.rewards.base import redacted

# torch and PIL are imported where used: the command line's parser imports this module (through
# noiseppo.rewards.server, for its defaults), and `noiseppo --help` loads neither.
if TYPE_CHECKING:
    import torch

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2
TOKEN_ENV = "NOISEPPO_REWARD_TOKEN"
"""The environment variable that holds the token, for the server and for the client."""
RETRIED = {408, 429}
"""The 4xx answers that say "not now" rather than "not this request"."""

# RFC 6750's b64token: what may follow "Bearer " in a header without quoting.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def encode_png(image: torch.Tensor) -> str:
    """One (3, H, W) image in [0, 1] as base64 PNG text."""
    from noiseppo.images import to_pil

    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def checked_token(token: str | None, source: str) -> str | None:
    """``token`` if it can go in a bearer header (None stays None); ``source`` names where it came from.
    The messages never repeat the token."""
    if token is None:
        return None
    if not token:
        raise UserError(f"{source}: the token is empty (for no token, give none at all)")
    if not _TOKEN.fullmatch(token):
        raise UserError(
            f"{source}: a token may hold only letters, digits and - . _ ~ + / (then = padding); "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return token


class HttpReward:
    """A reward answered by the server at ``url`` (see the module docstring)."""

    def __init__(self, url: str, timeout: float | None = None, retries: int | None = None):
        self.url, fragment = urldefrag(url)
        where = f"reward '{redacted(url)}'"
        options = dict(parse_qsl(fragment, keep_blank_values=True))
        unknown = set(options) - {"timeout", "retries", "token"}
        if unknown:
            raise UserError(f"{where}: unknown option(s) {', '.join(sorted(unknown))} (known: timeout, retries, token)")
        try:
            self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT)) if timeout is None else timeout
            self.retries = int(options.get("retries", DEFAULT_RETRIES)) if retries is None else retries
        except ValueError:
            raise UserError(f"{where}: timeout must be seconds and retries a whole number") from None
        if not self.timeout > 0 or self.retries < 0:
            raise UserError(f"{where}: timeout must be > 0 and retries >= 0")
        if "token" in options:
            token = checked_token(options["token"], f"{where}: #token")
        else:
            token = checked_token(os.environ.get(TOKEN_ENV), TOKEN_ENV)
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        import torch

        images = torch.as_tensor(images).float().cpu()
        body = json.dumps({"prompts": list(prompts), "images": [encode_png(im) for im in images]}).encode()
        reply = self._post(body)
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list):
            raise UserError(f'reward server {self.url}: expected {{"scores": [...]}}, got {str(reply)[:80]}')
        try:
            return torch.tensor([float("nan") if s is None else float(s) for s in scores], dtype=torch.float32)
        except (TypeError, ValueError):
            raise UserError(f"reward server {self.url}: the scores are not all numbers or null") from None

    def _post(self, body: bytes) -> Any:
        request = urllib.request.Request(self.url, data=body, headers=self._headers)
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2 ** (attempt - 1), 30))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                try:
                    detail = json.loads(e.read()).get("error", "")
                except (ValueError, AttributeError, OSError, http.client.HTTPException):
                    detail = ""
                reason = f"HTTP {e.code}" + (f": {first_line(detail)}" if detail else "")
                if e.code < 500 and e.code not in RETRIED:
                    raise UserError(f"reward server {self.url} refused the batch ({reason})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                cause = getattr(e, "reason", e)
                reason = "timed out" if isinstance(cause, TimeoutError) else first_line(cause) or type(e).__name__
            except http.client.HTTPException as e:  # a server that died half way through its answer
                reason = error_line(e)
            except ValueError:
                raise UserError(f"reward server {self.url}: the answer is not JSON") from None
        tries = f"{self.retries + 1} tries" if self.retries else "1 try"
        raise UserError(f"reward server {self.url}: no scores after {tries} ({reason}; timeout {self.timeout:g} s)")
