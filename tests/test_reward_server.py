"""The reward server under hostile traffic and faults.

Every row of the reward-server table of docs/hostile_inputs.md as a raw request; a fuzz of
request lines, headers and bodies against the real ``noiseppo reward-server``; the bearer
token; and training through a server that is SIGKILLed mid-request, once coming back within
the client's retry window and once not (then ``--resume``).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import signal
import socket
import string
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from noiseppo.configs.presets import resolve
from noiseppo.errors import UserError
from noiseppo.rewards import get_reward
from noiseppo.rewards.http import TOKEN_ENV, HttpReward
from noiseppo.rewards.scoring import score_batch
from noiseppo.rewards.server import RewardServer, make_server
from noiseppo.shapes.render import render_scene
from noiseppo.storage.checkpoint import load_state
from noiseppo.training.trainer import train
from servers import log_lines, server_process, serving

DOC = Path(__file__).parents[1] / "docs" / "hostile_inputs.md"
TOKEN = "s3cret-Token_for.tests~1"
PROMPTS = ["a red circle", "two blue squares", "a green triangle", "three yellow circles"]


@functools.cache
def scene_png(prompt: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    render_scene(prompt, seed)[0].save(buffer, format="PNG")
    return buffer.getvalue()


def image_file(size: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size)).save(buffer, format=fmt)
    return buffer.getvalue()


@functools.cache
def bomb_png(side: int = 20_000) -> bytes:
    """A real PNG of side x side black 1-bit pixels: 400 million pixels in about 50 kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows, compressor = b"\0" * (1 + side // 8) * 1000, zlib.compressobj(9)
    idat = b"".join(compressor.compress(rows) for _ in range(side // 1000)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(prompts: list, images: list[bytes | str]) -> dict:
    return {"prompts": prompts, "images": [b64(i) if isinstance(i, bytes) else i for i in images]}


def request(
    payload: object = b"",
    method: str = "POST",
    path: str = "/score",
    token: str | None = TOKEN,
    length: int | str | None = "auto",
    headers: tuple[str, ...] = (),
    version: str = "HTTP/1.1",
) -> bytes:
    """A raw HTTP request; ``payload`` is bytes as they are or JSON to encode; ``length`` the
    Content-Length header ("auto": the body's, None: no header)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    lines = [f"{method} {path} {version}".rstrip(), "Host: 127.0.0.1", *headers]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {len(data) if length == 'auto' else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def exchange(port: int, data: bytes, keep_open: bool = False, timeout: float = 30) -> tuple[int | None, bytes]:
    """Send ``data`` and read the answer to its end: (status or None if none came, body).
    The request is half-closed after sending unless ``keep_open`` (a client that never finishes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if data:
            sock.sendall(data)
        if not keep_open:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, content = b"".join(chunks).partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return (int(match.group(1)) if match else None), content


@dataclass
class HttpCase:
    """One row of the reward-server table: a raw request and the answer it must get."""

    request: Callable[[], bytes]
    status: int
    message: str
    """The stable part of the JSON error, as the table quotes it."""
    hold: str | None = None
    """"lock": another request holds the reward model; "slots": every connection is taken."""
    keep_open: bool = False
    """The client sends part of its body and waits (the slow client)."""


RED = ["a red circle"]
HTTP_CASES: dict[str, HttpCase] = {
    "body over --max-body-mb": HttpCase(
        lambda: request(b"x" * 2**21), 413, "the body of 2 MB is over this server's limit of 1 MB (--max-body-mb)"
    ),
    "no Content-Length": HttpCase(lambda: request(b"{}", length=None), 411, "send a Content-Length"),
    "chunked body": HttpCase(
        lambda: request(b"2\r\n{}\r\n0\r\n\r\n", length=None, headers=("Transfer-Encoding: chunked",)),
        411,
        "send a Content-Length; chunked bodies are not read",
    ),
    "Content-Length that is not a number": HttpCase(
        lambda: request(b"{}", length="-1"), 400, "Content-Length must be a whole number of bytes, got '-1'"
    ),
    "body shorter than its Content-Length": HttpCase(
        lambda: request(b"{}", length=100), 400, "the body ended after 2 of 100 bytes"
    ),
    "slow client that never finishes its body": HttpCase(
        lambda: request(b"{", length=1000), 408, "the body did not arrive within 1 s (--read-timeout)", keep_open=True
    ),
    "malformed JSON": HttpCase(lambda: request(b'{"prompts": ['), 400, "the body is not JSON (Expecting value"),
    "JSON nested too deep": HttpCase(
        lambda: request(b"[" * 100_000), 400, "the body is not JSON (maximum recursion depth exceeded"
    ),
    "body that is not an object": HttpCase(
        lambda: request([1, 2]), 400, 'expected a JSON object {"prompts": [...], "images": [...]}'
    ),
    "prompts of the wrong type": HttpCase(
        lambda: request(body("a red circle", [scene_png("a red circle")])), 400, "'prompts' must be a list of strings"
    ),
    "images of the wrong type": HttpCase(
        lambda: request({"prompts": RED, "images": [1]}), 400, "'images' must be a list of strings"
    ),
    "more prompts than images": HttpCase(
        lambda: request(body(RED * 2, [scene_png("a red circle")])),
        400,
        "2 prompts for 1 images: give one prompt per image",
    ),
    "image that is not base64": HttpCase(
        lambda: request(body(RED, ["not base64!"])), 400, "image 0 is not base64 text"
    ),
    "image that is not a PNG": HttpCase(
        lambda: request(body(RED, [image_file(32, "JPEG")])), 400, "image 0 is not a PNG file"
    ),
    "truncated PNG": HttpCase(
        lambda: request(body(RED, [scene_png("a red circle")[:120]])),
        400,
        "image 0: cannot decode the PNG (OSError)",
    ),
    "decompression bomb": HttpCase(
        lambda: request(body(RED, [bomb_png()])),
        413,
        "the images hold 400,000,000 pixels, over this server's limit of 89,478,485 per request",
    ),
    "images of different sizes": HttpCase(
        lambda: request(body(RED * 2, [scene_png("a red circle"), image_file(8)])),
        400,
        "images of different sizes in one batch (8x8 and 32x32)",
    ),
    "images of a size the reward does not read": HttpCase(
        lambda: request(body(RED, [image_file(8)])),
        422,
        "the backend made images of shape (1, 3, 8, 8), the reward reads (1, 3, 32, 32)",
    ),
    "prompt the reward does not read": HttpCase(
        lambda: request(body(["a purple circle"], [scene_png("a red circle")])),
        422,
        "prompt 'a purple circle': word 2 'purple' is not a colour",
    ),
    "no token": HttpCase(
        lambda: request(body(RED, [scene_png("a red circle")]), token=None),
        401,
        f"this server needs a bearer token (the reward URL's #token=... or {TOKEN_ENV})",
    ),
    "wrong token": HttpCase(
        lambda: request(body(RED, [scene_png("a red circle")]), token="guess"), 401, "wrong bearer token"
    ),
    "method other than GET and POST": HttpCase(lambda: request(method="DELETE"), 405, "Unsupported method ('DELETE')"),
    "GET of another path": HttpCase(
        lambda: request(method="GET", path="/score"), 404, "GET /health is the health check; scores are POSTed"
    ),
    "garbled request line": HttpCase(lambda: b"HELLO\r\n\r\n", 400, "Bad request syntax ('HELLO')"),
    "HTTP/2 request line": HttpCase(lambda: request(version="HTTP/2.0"), 400, "Invalid HTTP version (2.0)"),
    "header line over 64 KiB": HttpCase(lambda: request(headers=("X-Long: " + "x" * 70_000,)), 431, "Line too long"),
    "reward busy past --queue-timeout": HttpCase(
        lambda: request(body(RED, [scene_png("a red circle")])),
        503,
        "busy: the reward stayed taken for 0.2 s (--queue-timeout)",
        hold="lock",
    ),
    "more connections than the server serves": HttpCase(
        lambda: b"", 503, "busy: 16 connections are being served", hold="slots"
    ),
}


@pytest.fixture(scope="module")
def case_server() -> Iterator[RewardServer]:
    server = make_server(get_reward("shapes"), token=TOKEN, max_body_mb=1, read_timeout=1, queue_timeout=0.2)
    with serving(server):
        yield server


@contextmanager
def holding(server: RewardServer, what: str | None) -> Iterator[None]:
    """Take the reward's lock, or every connection slot, for the duration."""
    taken = {"lock": [server.lock], "slots": [server.slots] * server.max_connections, None: []}[what]
    for lock in taken:
        lock.acquire()
    try:
        yield
    finally:
        for lock in taken:
            lock.release()


@pytest.mark.parametrize("name", list(HTTP_CASES))
def test_each_bad_request_gets_its_4xx_and_a_json_error(name: str, case_server: RewardServer) -> None:
    case, port = HTTP_CASES[name], case_server.server_address[1]
    with holding(case_server, case.hold):
        status, content = exchange(port, case.request(), case.keep_open)
    assert status == case.status, content[:300]
    assert case.message in json.loads(content)["error"]
    # ...and the server goes on answering.
    ok = body(PROMPTS[:2], [scene_png(p) for p in PROMPTS[:2]])
    assert exchange(port, request(ok)) == (200, b'{"scores": [1.0, 1.0]}')


def test_the_health_check_needs_no_token(case_server: RewardServer) -> None:
    port = case_server.server_address[1]
    assert exchange(port, request(method="GET", path="/health", token=None)) == (200, b'{"status": "ok"}')


def test_a_slow_client_holds_up_no_one_else(case_server: RewardServer) -> None:
    """The issue's hole: a client that announces 1,000 bytes and sends one blocked every request."""
    port = case_server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(request(b"{", length=1000))
        start = time.monotonic()
        images = torch.stack([torch.from_numpy(np.array(render_scene(p, 0)[0])) for p in PROMPTS])
        scores = HttpReward(f"http://127.0.0.1:{port}/score#token={TOKEN}")(images.permute(0, 3, 1, 2) / 255, PROMPTS)
        assert time.monotonic() - start < 0.5 and scores.tolist() == [1.0] * 4
        assert slow.recv(4096).startswith(b"HTTP/1.0 408 ")


def test_the_bomb_is_one_by_pil_s_own_measure() -> None:
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb_png()))
    assert len(bomb_png()) < 100_000


def test_a_reward_that_breaks_is_a_500_and_the_client_retries() -> None:
    shapes, calls = get_reward("shapes"), []

    def flaky(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        calls.append(len(prompts))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return shapes(images, prompts)

    images = torch.stack([torch.from_numpy(np.array(render_scene(p, 0)[0])) for p in PROMPTS])
    images = images.permute(0, 3, 1, 2) / 255
    with serving(make_server(flaky)) as url:
        with pytest.raises(UserError, match=r"no scores after 1 try \(HTTP 500: the reward raised RuntimeError: CUDA"):
            HttpReward(url + "#retries=0")(images, PROMPTS)
        calls.clear()
        assert HttpReward(url + "#retries=1")(images, PROMPTS).tolist() == [1.0] * 4
        assert calls == [4, 4], "the retry sent the whole batch once more"

    def crashing(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory")

    # A term of a weighted sum that crashes reaches the server as a UserError made from the crash.
    with serving(make_server(lambda images, prompts: score_batch(crashing, images, prompts))) as url:
        with pytest.raises(UserError, match=r"no scores after 1 try \(HTTP 500: the reward raised RuntimeError"):
            HttpReward(url + "#retries=0")(images, PROMPTS)


def test_with_debug_the_server_logs_a_breaking_rewards_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """noiseppo reward-server --debug (NOISEPPO_DEBUG=1): the 500's one line, and in the log where it broke."""
    from noiseppo.errors import DEBUG_ENV

    def crashing(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory")

    images = torch.zeros(len(PROMPTS), 3, 32, 32)
    for debug in ("0", "1"):
        monkeypatch.setenv(DEBUG_ENV, debug)
        with serving(make_server(crashing)) as url:
            with pytest.raises(UserError, match=r"HTTP 500: the reward raised RuntimeError: CUDA out of memory"):
                HttpReward(url + "#retries=0")(images, PROMPTS)
        log = capsys.readouterr().err
        assert ('raise RuntimeError("CUDA out of memory")' in log) == (debug == "1"), log


def table_rows() -> dict[str, list[str]]:
    """The reward-server table of docs/hostile_inputs.md: case → its cells."""
    section = DOC.read_text().split("## The reward server's table", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and not set(cells[0]) <= set("- ") and cells[0] != "case":
            rows[cells[0]] = cells
    return rows


def test_the_table_documents_exactly_these_requests() -> None:
    rows = table_rows()
    assert sorted(rows) == sorted(HTTP_CASES)
    for name, case in HTTP_CASES.items():
        message = re.findall(r"`([^`]*)`", rows[name][3])
        assert message and case.message in message[0], (name, rows[name][3])
        assert rows[name][2] == str(case.status), name


# -- the token


@pytest.mark.parametrize(("host", "token", "warns"), [("0.0.0.0", None, True), ("0.0.0.0", TOKEN, False)])
def test_off_loopback_without_a_token_is_one_warning(
    noiseppo, host: str, token: str | None, warns: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    if token:
        monkeypatch.setenv(TOKEN_ENV, token)

    def stop(self: RewardServer) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RewardServer, "serve_forever", stop)
    done = noiseppo.in_process("reward-server", "--reward", "shapes", "--host", host, "--port", "0")
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    warning = "noiseppo: warning: serving on 0.0.0.0 without a token: anyone who can reach port"
    assert err.count(warning) == int(warns) and len(err.splitlines()) == int(warns), err
    assert ("bearer token required" in out) == (token is not None) and TOKEN not in out + err


def test_with_a_token_only_its_bearer_is_served_and_no_log_shows_it(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    images = torch.stack([torch.from_numpy(np.array(render_scene(p, 0)[0])) for p in PROMPTS])
    images = images.permute(0, 3, 1, 2) / 255
    log = tmp_path / "server.log"
    with server_process(noiseppo, "--reward", "shapes", "--port", "0", log=log, env={TOKEN_ENV: TOKEN}) as (_, url):
        for fragment, answer in [("", "needs a bearer token"), ("#token=wrong-guess", "wrong bearer token")]:
            with pytest.raises(UserError, match=f"refused the batch \\(HTTP 401: .*{answer}") as refused:
                HttpReward(url + fragment)(images, PROMPTS)
            assert "wrong-guess" not in str(refused.value)
        assert HttpReward(url + f"#token={TOKEN}")(images, PROMPTS).tolist() == [1.0] * 4
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        assert HttpReward(url)(images, PROMPTS).tolist() == [1.0] * 4
        with pytest.raises(UserError, match="unknown option") as bad:  # a message about the URL hides its fragment
            HttpReward(url + f"#token={TOKEN}&retry=1")
        assert TOKEN not in str(bad.value)
        lines = log_lines(log, 4)  # before the server stops: it logs each request after answering it
    assert [line.split('"')[2].split(",")[0] for line in lines] == [" 401", " 401", " 200", " 200"], lines
    assert TOKEN not in log.read_text() and "wrong-guess" not in log.read_text()


# -- the fuzz

FUZZ_EXAMPLES = int(os.environ.get("NOISEPPO_FUZZ_EXAMPLES", "300"))
"""Requests the fuzz sends; docs/reward_server.md quotes a run of many more."""
IMAGES = [
    *(b64(scene_png(p, s)) for p in PROMPTS for s in range(2)),
    b64(image_file(8)),
    b64(image_file(32, "JPEG")),
    b64(image_file(32, mode="RGBA")),
    b64(image_file(32, mode="P")),
    b64(image_file(32, mode="I;16")),
    b64(scene_png("a red circle")[:120]),
    b64(bomb_png()),
    "",
    "not base64!",
]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\r\n"), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
scored = st.lists(st.sampled_from(PROMPTS), min_size=1, max_size=8).map(
    lambda prompts: {"prompts": prompts, "images": [b64(scene_png(p)) for p in prompts]}
)  # a request that must be answered 200
shaped = st.fixed_dictionaries(
    {
        "prompts": st.lists(st.sampled_from(PROMPTS) | st.text(max_size=30), max_size=6) | json_values,
        "images": st.lists(st.sampled_from(IMAGES) | st.binary(max_size=64).map(b64), max_size=6) | json_values,
    }
)
bodies = st.one_of(
    scored.map(lambda d: json.dumps(d).encode()),
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=4096),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """A request line, headers and body drawn at random, or a well-formed head with a drawn body."""
    payload = draw(bodies)
    if draw(st.booleans()):
        return request(payload)
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "HEAD", "OPTIONS"]) | st.text(string.ascii_letters))
    path = draw(st.sampled_from(["/score", "/", "/health", "//x?y=1"]) | header_text.map(lambda t: "/" + t))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/x", ""]))
    token = draw(st.sampled_from([TOKEN, TOKEN, None, "wrong"]) | header_text)
    length = draw(st.sampled_from(["auto", "auto", None, "-1", str(2**40)]) | st.integers(0, 2**21).map(str))
    headers = draw(
        st.lists(
            st.sampled_from(["Transfer-Encoding: chunked", "Expect: 100-continue", "Connection: keep-alive"])
            | st.tuples(st.text(string.ascii_letters + "-", min_size=1, max_size=12), header_text).map(": ".join),
            max_size=4,
        )
    )
    try:
        return request(payload, method, path.replace(" ", ""), token, length, tuple(headers), version)
    except UnicodeEncodeError:  # a drawn character beyond latin-1
        return request(payload, method, "/score", token, length, tuple(headers), version)


@pytest.fixture(scope="module")
def fuzz_server(noiseppo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[psutil.Process, int, Path]]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    args = ["--reward", "shapes", "--port", "0", "--max-body-mb", "1", "--read-timeout", "5"]
    with server_process(noiseppo, *args, log=log, env={TOKEN_ENV: TOKEN}) as (process, url):
        yield psutil.Process(process.pid), int(url.rsplit(":", 1)[1].split("/")[0]), log


def test_fuzz_never_crashes_never_answers_5xx_and_logs_each_request(
    fuzz_server: tuple[psutil.Process, int, Path],
) -> None:
    """The fuzz, then its figures (docs/reward_server.md) and the server's one line per request,
    in one test: the summary cannot be skipped by -k or by the order the tests run in."""
    process, port, log = fuzz_server
    start_rss = process.memory_info().rss / 2**20
    statuses: Counter = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=raw_requests())
    def one_request(data: bytes) -> None:
        try:
            status, _ = exchange(port, data)
        except (ConnectionResetError, BrokenPipeError):  # a body longer than its Content-Length: unread bytes, RST
            status = "reset"
        statuses[status] += 1
        assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE, "the server died"
        assert status in (None, "reset") or status < 500, (status, data[:300])

    one_request()
    text = log.read_text()
    assert "Traceback" not in text
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{process.pid}/status").read_text())[1]) / 1024
    summary = {
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "server_alive": process.is_running(),
        "server_start_rss_mb": round(start_rss, 1),
        "server_peak_rss_mb": round(peak_mb, 1),
        "log_lines": len(text.splitlines()),
    }
    print(json.dumps(summary))
    assert statuses[200] > 0, "the fuzz never sent a good request"
    assert len(text.splitlines()) == summary["requests"], "one log line per request"
    assert peak_mb < 1024


# -- training through a server that dies

DYING_REWARD = """
import os, time
from noiseppo.rewards import get_reward
from noiseppo.rewards.scoring import score_batch

shapes, calls = get_reward("shapes"), 0

def reward(images, prompts):
    global calls
    calls += 1
    if calls == int(os.environ.get("DIE_ON_CALL", 0)):
        open(os.environ["DYING"], "w").close()
        time.sleep(120)  # SIGKILLed here, with the client waiting for its answer
    return shapes(images, prompts)
"""
RUN = ["--preset", "tiny", "iterations=4", "eval_prompts=", "threads=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run through a server that never fails (so the same PNG round trip)."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    with serving(make_server(get_reward("shapes"))) as url:
        train(resolve("tiny", overrides=[*RUN[2:], f"reward={url}"]), run, quiet=True)
    return run


@pytest.fixture
def dying_server(noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple]]:
    """Starts ``noiseppo reward-server`` on a reward that hangs on its 3rd call; a watcher thread
    SIGKILLs it there and, with ``come_back``, starts a healthy one on the same port."""
    (tmp_path / "dying_reward.py").write_text(DYING_REWARD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with ExitStack() as stack:
        watchers: list[threading.Thread] = []

        def start(come_back: bool) -> tuple[str, dict]:
            env, log = {"DIE_ON_CALL": "3", "DYING": str(tmp_path / "dying")}, tmp_path / "log"
            args = ["--reward", "dying_reward:reward"]
            first, url = stack.enter_context(server_process(noiseppo, *args, "--port", "0", log=log, env=env))
            events: dict = {}

            def kill_and_restart() -> None:
                while not (tmp_path / "dying").exists() and first.poll() is None:
                    time.sleep(0.02)
                first.send_signal(signal.SIGKILL)
                first.wait()
                events["killed"] = time.monotonic()
                if come_back:
                    port = url.rsplit(":", 1)[1].split("/")[0]
                    stack.enter_context(server_process(noiseppo, *args, "--port", port, log=log))
                    events["back"] = time.monotonic()

            watchers.append(threading.Thread(target=kill_and_restart))
            watchers[-1].start()
            return url, events

        yield start
        for watcher in watchers:
            watcher.join()


def assert_same_run(run: Path, reference: Path) -> None:
    mine, theirs = load_state(run / "checkpoint"), load_state(reference / "checkpoint")
    assert mine[1]["iteration"] == theirs[1]["iteration"] == 4
    assert all(torch.equal(mine[0][k], theirs[0][k]) for k in theirs[0]), "bit-identical policy and optimizer"
    rewards = [[json.loads(line)["reward_mean"] for line in (r / "metrics.jsonl").read_text().splitlines()]
               for r in (run, reference)]  # fmt: skip
    assert rewards[0] == rewards[1], "every batch scored once, in order"


def test_a_server_back_within_the_retry_window_costs_no_score(
    dying_server: Callable, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    url, events = dying_server(come_back=True)
    # Retries 1, 2, 4, 8, 16 and 30 s apart: a minute for the server to come back.
    train(resolve("tiny", overrides=[*RUN[2:], f"reward={url}#retries=6"]), tmp_path / "run", quiet=True)
    assert "back" in events, "the run went on only once the server was back"
    assert_same_run(tmp_path / "run", uninterrupted)


def test_a_server_that_stays_down_stops_the_run_and_resume_continues(
    noiseppo, dying_server: Callable, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # for both sides, and in no log
    url, events = dying_server(come_back=False)
    run = tmp_path / "run"
    failed = noiseppo.in_process("train", *RUN, "--reward", f"{url}#retries=1", "--out", run)
    err = failed.stderr
    assert failed.returncode == 2, err
    errors = [line for line in err.replace("\r", "\n").splitlines() if "noiseppo: error:" in line]
    # The reward and the phase first (iteration 3, counted from 1 as metrics.jsonl counts), then the client's
    # line, then what the run kept and how to go on.
    assert errors == [f"noiseppo: error: reward '{url}', training iteration 3: reward server {url}: no scores after "
                      "2 tries ([Errno 111] Connection refused; timeout 60 s); no iteration finished after the "
                      f"checkpoint of iteration 2: `noiseppo train --resume {run}` continues"], err  # fmt: skip
    assert load_state(run / "checkpoint")[1]["iteration"] == 2, "the iterations before the failure are kept"
    port = url.rsplit(":", 1)[1].split("/")[0]
    with server_process(noiseppo, "--reward", "shapes", "--port", port, log=tmp_path / "log2"):
        resumed = noiseppo.in_process("train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    out, err = resumed.stdout, resumed.stderr
    assert_same_run(run, uninterrupted)
    logs = (tmp_path / "log").read_text() + (tmp_path / "log2").read_text()
    assert TOKEN not in out + err + logs
