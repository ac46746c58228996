"""A local, scriptable, faulty OpenAI-compatible chat-completions server for the LLM judge tests.

It answers ``POST /v1/chat/completions`` like a tiny deterministic judge: a pointwise prompt gets
the rating ``rating(response)``, a pairwise prompt gets ``A`` when ``rating(a) >= rating(b)``, any
other prompt (the judge's start-up check, the first request of a run) ``A``. A
script of faults can be queued (``server.faults``): each request pops one action first:

    "ok" | "429" | "500" | "503" | "timeout" (sleep past the client's timeout) | "malformed"
    (not JSON) | "nocontent" (JSON without a message) | "refuse" (an answer with no verdict) |
    "401" (not retryable) | "die" (the server shuts itself down; later requests are refused)

``server.default`` is the action once the script is empty. Requests are bounded: after
``max_requests`` every answer is a 400, so a runaway client ends. Shut down in teardown.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_POINTWISE = re.compile(r"\[Response\]\n(.*?)\n\nReply with the rating", re.S)
_PAIRWISE = re.compile(r"\[Response A\]\n(.*?)\n\n\[Response B\]\n(.*?)\n\nReply with a single letter", re.S)


def rating(response: str) -> int:
    """The fake judge's 1-10 rating of a response: deterministic, spread out."""
    return 1 + sum(map(ord, response)) % 10


class FaultyJudgeServer:
    def __init__(self, port: int = 0, max_requests: int = 5000):
        self.faults: deque[str] = deque()
        self.default = "ok"
        self.max_requests = max_requests
        self.requests = 0
        self.served = {"ok": 0}
        self.auth: set[str] = set()
        self.asked: list[tuple[str, str]] = []  # (action, the request's last message), in arrival order
        self.lock = threading.Lock()
        self.sleep_s = 1.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with owner.lock:
                    owner.requests += 1
                    owner.auth.add(self.headers.get("Authorization", ""))
                    action = owner.faults.popleft() if owner.faults else owner.default
                    if owner.requests > owner.max_requests:
                        action = "400"
                    owner.served[action] = owner.served.get(action, 0) + 1
                    owner.asked.append((action, body["messages"][-1]["content"]))
                owner.handle(self, action, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.alive = True

    rating = staticmethod(rating)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def answer(self, body: dict) -> str:
        text = body["messages"][-1]["content"]
        pair = _PAIRWISE.search(text)
        if pair:
            return "A" if rating(pair.group(1)) >= rating(pair.group(2)) else "B"
        pointwise = _POINTWISE.search(text)
        return str(rating(pointwise.group(1))) if pointwise else "A"  # "A": the judge's start-up check

    def handle(self, h: BaseHTTPRequestHandler, action: str, body: dict) -> None:
        def send(code: int, payload: bytes, headers: dict | None = None) -> None:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)

        if action == "die":
            h.close_connection = True
            threading.Thread(target=self.stop, daemon=True).start()
            return  # no answer: the connection just closes
        if action == "timeout":
            time.sleep(self.sleep_s)
            action = "ok"
        if action in ("429", "500", "503", "401", "400"):
            headers = {"Retry-After": "0"} if action == "429" else None
            send(int(action), json.dumps({"error": {"message": f"fault {action}"}}).encode(), headers)
        elif action == "malformed":
            send(200, b"<html>not json")
        elif action == "nocontent":
            send(200, json.dumps({"choices": [{"message": {"role": "assistant"}}]}).encode())
        else:
            content = "I cannot judge this." if action == "refuse" else self.answer(body)
            send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    def stop(self) -> None:
        if self.alive:
            self.alive = False
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def judge_server():
    servers: list[FaultyJudgeServer] = []

    def start(port: int = 0) -> FaultyJudgeServer:
        server = FaultyJudgeServer(port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
