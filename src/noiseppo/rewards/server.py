"""The reference reward server: ``noiseppo reward-server --reward NAME``.

It answers the protocol of ``noiseppo.rewards.http`` with any reward this package can build, so a
heavy reward model can live in its own environment. It is stdlib ``ThreadingHTTPServer``:
one thread per connection reads and checks a request; the reward model sits behind one
lock (a model on one GPU gains nothing from concurrent calls), and a request that cannot
take it within ``queue_timeout`` is answered 503. Each connection has ``read_timeout``
seconds in all to send its request, so a client that trickles bytes holds its own thread
and nothing else, and at most ``MAX_CONNECTIONS`` are served at once. Every malformed
request gets a 4xx and a JSON error; ``GET /health`` answers ``{"status": "ok"}``.

The defaults below are also the command's (its parser reads them), so this module imports no
torch, numpy or PIL until a request is decoded: ``noiseppo --help`` stays fast.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from noiseppo.errors import UserError, debugging, first_line
from noiseppo.rewards.http import TOKEN_ENV, checked_token

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_BODY_MB = 64.0
"""Largest request body in MiB (413 beyond)."""
DEFAULT_READ_TIMEOUT = 30.0
"""Seconds a client has to send its whole request (408 beyond)."""
DEFAULT_QUEUE_TIMEOUT = 30.0
"""Seconds a request waits for the reward model while others are scored (503 beyond)."""
MAX_CONNECTIONS = 16
"""Connections served at once; each may hold a body of up to ``max_body_mb`` (about 3x that
in memory while it is parsed), so this bounds the server's memory. Beyond it: 503."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Refused(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _DeadlineReader(io.RawIOBase):
    """A socket's input that ends at a deadline: each wait for bytes is given only what is
    left of the request's read time, so a client that trickles bytes is cut off on time."""

    def __init__(self, sock: socket.socket, seconds: float):
        self.sock, self.deadline = sock, time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than the read time-out")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk, which the format puts first; None if not a PNG.
    Read before PIL sees the file, so a bomb is refused without decoding (or warning about) it."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def parse_request(body: bytes, max_pixels: int | None) -> tuple[list[str], list[bytes]]:
    """The prompts and the PNG files of a request body, or ``Refused``. Checks everything that
    needs no decoding (the pixel count comes from the PNG headers), so a bad request costs no pixels."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
        raise Refused(400, f"the body is not JSON ({first_line(e)[:120] or type(e).__name__})") from None
    if not isinstance(request, dict) or "prompts" not in request or "images" not in request:
        raise Refused(400, 'expected a JSON object {"prompts": [...], "images": [...]}')
    prompts, images = request["prompts"], request["images"]
    for key, value in (("prompts", prompts), ("images", images)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Refused(400, f"'{key}' must be a list of strings")
    if len(prompts) != len(images):
        raise Refused(400, f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
    pngs, sizes = [], set()
    for i, text in enumerate(images):
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, f"image {i} is not base64 text") from None
        size = _png_size(data)
        if size is None:
            raise Refused(400, f"image {i} is not a PNG file")
        pngs.append(data)
        sizes.add(size)
    if len(sizes) > 1:
        shown = " and ".join(f"{w}x{h}" for w, h in sorted(sizes)[:2])
        raise Refused(400, f"images of different sizes in one batch ({shown})")
    pixels = sum(w * h for w, h in sizes) * len(pngs)  # one size, or none
    if max_pixels is not None and pixels > max_pixels:
        raise Refused(
            413,
            f"the images hold {pixels:,} pixels, over this server's limit of {max_pixels:,} per request "
            "(PIL's MAX_IMAGE_PIXELS); send fewer or smaller images",
        )
    return prompts, pngs


def decode_pngs(pngs: Sequence[bytes]) -> torch.Tensor:
    """PNG files of one size as a float batch (N, 3, H, W) in [0, 1], or ``Refused``."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    # What PIL's PNG decoder raises on a broken file (bad chunks, CRCs, truncation, zlib data).
    errors = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, UnidentifiedImageError)
    pixels = []
    for i, data in enumerate(pngs):
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                pixels.append(np.asarray(im.convert("RGB")))
        except errors as e:
            raise Refused(400, f"image {i}: cannot decode the PNG ({type(e).__name__})") from None
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div_(255)


class RewardServer(ThreadingHTTPServer):
    """The reference reward server (see the module docstring); ``make_server`` builds one."""

    daemon_threads = False  # server_close() waits for the requests in flight, each bounded in time
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        reward: Any,
        token: str | None,
        max_body_mb: float,
        read_timeout: float,
        queue_timeout: float,
        max_connections: int,
    ):
        from PIL import Image

        super().__init__(address, _Handler)
        self.reward, self.token = reward, token
        self.max_body = int(max_body_mb * 2**20)
        self.max_body_mb, self.read_timeout, self.queue_timeout = max_body_mb, read_timeout, queue_timeout
        self.max_pixels = Image.MAX_IMAGE_PIXELS
        self.max_connections = max_connections
        self.slots = threading.BoundedSemaphore(max_connections)
        self.lock = threading.Lock()  # the reward model: one call at a time
        self.quiet = False

    def score(self, prompts: list[str], pngs: list[bytes]) -> list[float | None]:
        """Decode and score one checked batch under the reward's lock (so at most one batch of
        pixels is in memory), waiting at most ``queue_timeout`` for it."""
        from noiseppo.rewards.scoring import check_images, checked_scores, reward_failure

        if not pngs:
            return []
        if not self.lock.acquire(timeout=self.queue_timeout):
            raise Refused(503, f"busy: the reward stayed taken for {self.queue_timeout:g} s (--queue-timeout)")
        try:
            batch = decode_pngs(pngs)
            try:
                check_images(self.reward, batch, len(prompts))
                raw = self.reward(batch, prompts)
            except UserError as e:
                # A UserError of its own is the reward refusing these images or prompts; one made
                # from another exception (a weighted sum's term that crashed) is the reward breaking.
                broke = isinstance(e.__cause__, Exception) and not isinstance(e.__cause__, UserError)
                if broke and debugging():  # noiseppo reward-server --debug: the log shows where it broke
                    traceback.print_exc()
                raise Refused(500 if broke else 422, str(e)) from None
            except Exception as e:  # the reward model broke: the server's fault, and worth a retry
                if debugging():
                    traceback.print_exc()
                raise Refused(500, str(reward_failure(e))) from None
            try:
                scores = checked_scores(raw, len(prompts)).tolist()
            except UserError as e:
                raise Refused(500, str(e)) from None
        finally:
            self.lock.release()
        return [None if s != s else s for s in scores]  # NaN: null

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is one log line; anything else is a bug and keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            if not self.quiet:
                print(f"{client_address[0]} connection lost ({type(error).__name__})", file=sys.stderr)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: RewardServer
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads
    default_request_version = "HTTP/1.0"  # answer even a garbled request line with a status line

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.server.read_timeout))
        self.started = time.perf_counter()
        self.unread, self.count = 0, 0
        self.command, self.path, self.request_version = None, "-", self.default_request_version  # until parsed

    def handle(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            return self._answer(503, {"error": f"busy: {self.server.max_connections} connections are being served"})
        try:
            super().handle()
        finally:
            self.server.slots.release()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0].rstrip("/") == "/health":
            return self._answer(200, {"status": "ok"})
        self._answer(404, {"error": "GET /health is the health check; scores are POSTed"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._read_length()
            self._check_token()  # after the length: a refused body is drained, so its client reads the 401
            prompts, pngs = parse_request(self._read_body(), self.server.max_pixels)
            self.count = len(pngs)
            scores = self.server.score(prompts, pngs)
        except Refused as e:
            return self._answer(e.status, {"error": str(e)})
        self._answer(200, {"scores": scores})

    def _check_token(self) -> None:
        token = self.server.token
        if token is None:
            return
        given = self.headers.get("Authorization")
        if given is None:
            raise Refused(401, f"this server needs a bearer token (the reward URL's #token=... or {TOKEN_ENV})")
        # Constant time: the answer's timing says nothing about how much of a guess was right.
        if not hmac.compare_digest(given.encode("latin-1", "replace"), f"Bearer {token}".encode()):
            raise Refused(401, "wrong bearer token")

    def _read_length(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refused(411, "send a Content-Length; chunked bodies are not read")
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise Refused(411, "send a Content-Length")
        digits = declared.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):  # int() refuses 4,300 digits
            raise Refused(400, f"Content-Length must be a whole number of bytes, got {declared[:40]!r}")
        self.unread = int(digits)

    def _read_body(self) -> bytes:
        length = self.unread
        if length > self.server.max_body:
            raise Refused(
                413,
                f"the body of {length / 2**20:.3g} MB is over this server's limit of "
                f"{self.server.max_body_mb:g} MB (--max-body-mb); send fewer images per request (render_batch)",
            )
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise Refused(
                408, f"the body did not arrive within {self.server.read_timeout:g} s (--read-timeout)"
            ) from None
        self.unread -= len(body)
        if self.unread:
            raise Refused(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _drain(self) -> None:
        """Read what is left of a refused body (until the deadline), so that the client reads our
        answer instead of a reset connection: closing on unread bytes sends TCP RST."""
        try:
            while self.unread > 0:
                chunk = self.rfile.read1(min(self.unread, 2**20))
                if not chunk:
                    break
                self.unread -= len(chunk)
        except OSError:  # TimeoutError too: the answer went out, the deadline ends the wait
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (request line, headers, method) as JSON; a request it
        cannot parse is the client's fault, so its 501 and 505 become 405 and 400."""
        status = {501: 405, 505: 400}.get(code, code)
        self.unread = 2**20  # drain what follows (up to 1 MiB or the deadline): see _drain
        self._answer(status, {"error": (message or HTTPStatus(status).phrase)[:200]})

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.connection.settimeout(self.server.read_timeout)  # a client that never reads its answer
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            if status == 503:
                self.send_header("Retry-After", "1")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
            sent = ""
        except OSError as e:
            sent = f" (answer not delivered: {type(e).__name__})"
        self.close_connection = True
        if status >= 400:
            self._drain()
        error = f": {payload['error']}" if "error" in payload else ""
        size = self.headers.get("Content-Length", "-") if getattr(self, "headers", None) else "-"
        self.log_message(
            '"%s %s" %d, %s B, %d images, %.0f ms%s%s',
            self.command or "-",
            self.path[:100],
            status,
            str(size)[:20],
            self.count,
            1000 * (time.perf_counter() - self.started),
            error[:300],
            sent,
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Nothing: ``_answer`` logs each request once, with its size, count and time."""

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def make_server(
    reward: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> RewardServer:
    """A server answering the protocol above with ``reward`` (port 0: any free port); with a
    ``token``, only requests that carry it. Call ``serve_forever``, then ``server_close``."""
    try:
        return RewardServer(
            (host, port),
            reward,
            checked_token(token, "--token"),
            max_body_mb,
            read_timeout,
            queue_timeout,
            max_connections,
        )
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port} ({e.strerror or e})") from None
