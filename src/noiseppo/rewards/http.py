"""Rewards served by another process over HTTP, and the reference server.

Protocol: ``POST`` to the reward's URL a JSON body
``{"prompts": [str, ...], "images": [base64 PNG, ...]}`` (one prompt per image, 8-bit RGB);
the answer is ``{"scores": [float or null, ...]}``, one per image, in order (null is NaN: a
failed image). An error is any non-2xx status, ideally with ``{"error": "one line"}``.

The client waits ``timeout`` seconds per request and tries ``retries`` more times after a
time-out, a refused connection or a 5xx answer (1 s, 2 s, 4 s ... apart); a 4xx answer is
the request's fault and is not retried. Defaults: 60 s and 2 retries. On the command line
they go in the URL's fragment, which is never sent to the server:
``http://127.0.0.1:8000/score#timeout=120&retries=0``.

``noiseppo reward-server --reward NAME`` serves any reward this package can build, so a
heavy reward model can live in its own environment (stdlib ``http.server``, one request at a
time: a reward model on one GPU gains nothing from concurrent requests).
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urldefrag

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from noiseppo.errors import UserError
from noiseppo.grid import to_pil

DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 2


def encode_png(image: torch.Tensor) -> str:
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as im:
        return np.array(im.convert("RGB"))  # a writable copy: torch.from_numpy shares it


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


class HttpReward:
    """A reward answered by the server at ``url`` (see the module docstring)."""

    def __init__(self, url: str, timeout: float | None = None, retries: int | None = None):
        self.url, fragment = urldefrag(url)
        options = dict(parse_qsl(fragment, keep_blank_values=True))
        unknown = set(options) - {"timeout", "retries"}
        if unknown:
            raise UserError(f"reward '{url}': unknown option(s) {', '.join(sorted(unknown))} (known: timeout, retries)")
        try:
            self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT)) if timeout is None else timeout
            self.retries = int(options.get("retries", DEFAULT_RETRIES)) if retries is None else retries
        except ValueError:
            raise UserError(f"reward '{url}': timeout must be seconds and retries a whole number") from None
        if not self.timeout > 0 or self.retries < 0:
            raise UserError(f"reward '{url}': timeout must be > 0 and retries >= 0")

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
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
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
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
                except (ValueError, AttributeError, OSError):
                    detail = ""
                reason = f"HTTP {e.code}" + (f": {_first_line(str(detail))}" if detail else "")
                if e.code < 500:
                    raise UserError(f"reward server {self.url} refused the batch ({reason})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                cause = getattr(e, "reason", e)
                reason = "timed out" if isinstance(cause, TimeoutError) else _first_line(str(cause)) or type(e).__name__
            except ValueError:
                raise UserError(f"reward server {self.url}: the answer is not JSON") from None
        tries = f"{self.retries + 1} tries" if self.retries else "1 try"
        raise UserError(f"reward server {self.url}: no scores after {tries} ({reason}; timeout {self.timeout:g} s)")


def make_server(reward: Any, host: str = "127.0.0.1", port: int = 0) -> HTTPServer:
    """An HTTP server answering the protocol above with ``reward`` (port 0: any free port)."""
    from noiseppo.rewards import score_batch

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                prompts, images = request["prompts"], request["images"]
                if not (isinstance(prompts, list) and isinstance(images, list) and len(prompts) == len(images)):
                    raise ValueError("expected lists 'prompts' and 'images' of one length")
                pixels = [decode_png(text) for text in images]
                if len({p.shape for p in pixels}) > 1:
                    raise ValueError("images of different sizes in one batch")
                batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255 if pixels else None
            except (ValueError, KeyError, TypeError, UnidentifiedImageError) as e:
                return self._answer(400, {"error": f"bad request: {e}"})
            try:
                scores = score_batch(reward, batch, prompts).tolist() if pixels else []
            except UserError as e:
                return self._answer(500, {"error": str(e)})
            self._answer(200, {"scores": [None if s != s else s for s in scores]})  # NaN: null

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # one line per request, as http.server does
            if not getattr(self.server, "quiet", False):
                super().log_message(format, *args)

    try:
        return HTTPServer((host, port), Handler)
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port} ({e.strerror or e})") from None
