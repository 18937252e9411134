"""A small OpenAI-compatible judge server for the tests (127.0.0.1 only, real HTTP).

It answers POST /v1/chat/completions in OpenAI's response shape. It reads the book's judge prompt it gets and
replies "100" when the model response equals the correct output, "I cannot judge an empty answer." when the response
is empty, and "10" otherwise. Some model names make it misbehave on purpose (see `_JudgeHandler`). It records every
request (path, headers, JSON payload) so that the tests can check what the client sent.
"""

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

BOOK_PROMPT = re.compile(
    r"Given the input `(?P<input>.*)` and correct output `(?P<output>.*)`, score the model response `(?P<response>.*)`"
    r" on a scale from 0 to 100, where 100 is the best score\. Respond with the integer number only\.",
    re.DOTALL,
)


class _JudgeHandler(http.server.BaseHTTPRequestHandler):
    """POST /v1/chat/completions. Model names that misbehave on purpose:

    "http-500" (an error that echoes the Authorization header), "not-json" (an HTML page), "not-a-completion" (JSON
    without choices), "slow" (answers after 1 s), "redirect" (a 302 to the same path, which urllib would follow with
    a GET), "flaky" (HTTP 503 from the server's second request on).
    """

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            pass

    def do_GET(self):  # only a followed redirect would GET: recorded, then refused
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "payload": None})
        self._send(405, b'{"error": {"message": "POST only"}}')

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "payload": payload})
            count = len(self.server.requests)
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": {"message": "no such route"}}')
        model = payload["model"]
        if model == "http-500":
            echoed = json.dumps({"error": {"message": f"boom; you sent {self.headers.get('Authorization')}"}})
            return self._send(500, echoed.encode())
        if model == "not-json":
            return self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        if model == "not-a-completion":
            return self._send(200, b'{"object": "list", "data": []}')
        if model == "redirect":
            return self._send(302, b"", Location="/v1/chat/completions")
        if model == "flaky" and count > 1:
            return self._send(503, b'{"error": {"message": "overloaded"}}')
        if model == "slow":
            time.sleep(1.0)
        match = BOOK_PROMPT.fullmatch(payload["messages"][0]["content"])
        if match is None:
            content = "That is not the judge prompt."
        elif not match["response"]:
            content = "I cannot judge an empty answer."
        else:
            content = "100" if match["response"] == match["output"] else "10"
        completion = {
            "id": f"chatcmpl-{count}",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return self._send(200, json.dumps(completion).encode())


@pytest.fixture
def judge_server() -> Iterator[http.server.ThreadingHTTPServer]:
    """The judge server on 127.0.0.1 and a free port, served from a thread; `.base_url` is its /v1 URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JudgeHandler)
    server.daemon_threads = True
    server.requests, server.lock = [], threading.Lock()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
