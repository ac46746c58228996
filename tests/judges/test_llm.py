"""``llm`` judge against a local OpenAI-compatible chat-completions server (127.0.0.1, ephemeral port)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from selm.errors import ConfigError, JudgeError
from selm.judges import build_judge
from selm.judges.llm import parse_rating, parse_verdict

Reply = tuple[int, Any, dict[str, str]]


def answer(text: Any) -> Reply:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return 200, {"id": "x", "object": "chat.completion", "choices": [choice]}, {}


class ChatServer:
    """State of the fake server: what it was asked, and how it answers (``reply(body, n)``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.reply: Callable[[dict[str, Any], int], Reply] = lambda body, n: answer("A")
        self.inflight = 0
        self.max_inflight = 0
        self.base_url = ""

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.requests]


def handler_for(state: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with state.lock:
                n = len(state.requests)
                state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
            try:
                status, payload, headers = state.reply(body, n)
            finally:
                with state.lock:
                    state.inflight -= 1
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[ChatServer]:
    state = ChatServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def llm(server: ChatServer, **options: Any):
    return build_judge({"kind": "llm", "base_url": server.base_url, "model": "judge-1", "backoff_s": 0.001,
                        "max_backoff_s": 0.01, "timeout_s": 5, "concurrency": 2, **options})


def slot(body: dict[str, Any], letter: str) -> str:
    """The text of Response A or B in a pairwise request."""
    text = body["messages"][-1]["content"]
    start = text.index(f"[Response {letter}]\n") + len(f"[Response {letter}]\n")
    return text[start:].split("\n\n", 1)[0]


def pointwise_response(body: dict[str, Any]) -> str:
    """The response text in a pointwise request."""
    return body["messages"][-1]["content"].split("[Response]\n", 1)[1].split("\n", 1)[0]


def prefers_good(body: dict[str, Any], n: int) -> Reply:
    return answer("A" if "good" in slot(body, "A") else "B")


def test_pairwise_asks_both_orders_and_averages(server):
    server.reply = prefers_good
    judge = llm(server)
    assert judge.compare(["q1", "q2"], ["good one", "bad one"], ["bad two", "good two"]) == [1.0, 0.0]
    asked = sorted((slot(b, "A"), slot(b, "B")) for b in server.bodies())
    assert asked == [("bad one", "good two"), ("bad two", "good one"),
                     ("good one", "bad two"), ("good two", "bad one")]
    body = server.bodies()[0]
    assert body["model"] == "judge-1" and body["temperature"] == 0.0 and body["n"] == 1
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_position_bias_cancels(server):
    server.reply = lambda body, n: answer("A")  # always prefers the first slot
    assert llm(server).compare(["q"], ["x"], ["y"]) == [0.5]
    assert len(server.requests) == 2
    assert llm(server, both_orders=False).compare(["q"], ["x"], ["y"]) == [1.0]


def test_rank_scores_round_robin(server):
    server.reply = lambda body, n: answer("A" if len(slot(body, "A")) > len(slot(body, "B")) else "B")
    assert llm(server).rank_scores("q", ["bb", "ccc", "a"]) == [1.0, 2.0, 0.0]
    assert len(server.requests) == 6  # 3 unordered pairs × 2 orders


def test_pointwise_ratings(server):
    ratings = {"one": "7", "two": "Rating: [[9]]", "three": "Score: 2/10."}
    server.reply = lambda body, n: answer(ratings[pointwise_response(body)])
    judge = llm(server, mode="pointwise")
    assert not judge.is_pairwise
    assert judge.score(["q"] * 3, ["one", "two", "three"]) == [7.0, 9.0, 2.0]


def test_429_then_success_is_retried(server):
    server.reply = lambda body, n: (429, {"error": "slow down"}, {"Retry-After": "0"}) if n == 0 else answer("A")
    assert llm(server, both_orders=False, max_retries=2).compare(["q"], ["x"], ["y"]) == [1.0]
    assert len(server.requests) == 2


def test_500_until_budget_is_a_judge_error(server):
    server.reply = lambda body, n: (500, {"error": "overloaded"}, {})
    with pytest.raises(JudgeError) as err:
        llm(server, mode="pointwise", max_retries=2).score(["q"], ["r"])
    assert str(err.value) == ("judge llm 'judge-1': item 0: gave up after 3 attempts; "
                              'last error: HTTP 500: {"error": "overloaded"}')
    assert len(server.requests) == 3


def test_malformed_answer_is_retried_then_fails(server):
    server.reply = lambda body, n: answer("Both are fine." if n == 0 else "[[B]]")
    assert llm(server, both_orders=False).compare(["q"], ["x"], ["y"]) == [0.0]
    assert len(server.requests) == 2

    server.requests.clear()
    server.reply = lambda body, n: answer("I cannot decide.")
    with pytest.raises(JudgeError) as err:
        llm(server, max_retries=1, concurrency=1).compare(["q"], ["x"], ["y"])
    assert str(err.value) == ("judge llm 'judge-1': item 0 (order a, b): gave up after 2 attempts; last error: "
                              "malformed answer: no verdict (A or B) in the answer 'I cannot decide.'")


def test_malformed_body_is_retried(server):
    server.reply = lambda body, n: (200, b"not json", {}) if n == 0 else answer("7")
    assert llm(server, mode="pointwise").score(["q"], ["r"]) == [7.0]
    assert len(server.requests) == 2


def test_client_errors_are_not_retried(server):
    server.reply = lambda body, n: (401, {"error": "bad key"}, {})
    with pytest.raises(JudgeError, match=r"item 0: HTTP 401: \{\"error\": \"bad key\"\} \(not retried\)"):
        llm(server, mode="pointwise", max_retries=5).score(["q"], ["r"])
    assert len(server.requests) == 1


def test_timeout_is_retried(server):
    def slow_first(body: dict[str, Any], n: int) -> Reply:
        if n == 0:
            time.sleep(0.6)
        return answer("5")

    server.reply = slow_first
    assert llm(server, mode="pointwise", timeout_s=0.2).score(["q"], ["r"]) == [5.0]
    assert len(server.requests) == 2


def test_connection_refused_is_retried_then_fails():
    # Port 9 (discard) on localhost: nothing listens there, so every attempt is refused at once.
    judge = build_judge({"kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m", "mode": "pointwise",
                         "max_retries": 1, "backoff_s": 0.001, "timeout_s": 2})
    with pytest.raises(JudgeError, match=r"item 0: gave up after 2 attempts; last error: connection failed: "):
        judge.score(["q"], ["r"])


def test_api_key_sent_and_never_shown(server, monkeypatch, caplog):
    secret = "sk-test-0123456789"
    monkeypatch.setenv("SELM_TEST_JUDGE_KEY", secret)
    caplog.set_level(logging.DEBUG)
    server.reply = lambda body, n: (503, {"error": "busy"}, {}) if n < 2 else answer("A")
    judge = llm(server, api_key_env="SELM_TEST_JUDGE_KEY", both_orders=False)
    assert judge.compare(["q"], ["x"], ["y"]) == [1.0]
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {secret}"}
    server.reply = lambda body, n: (500, {"error": "down"}, {})
    with pytest.raises(JudgeError) as err:
        judge.compare(["q"], ["x"], ["y"])
    shown = " ".join([repr(judge), str(judge.config()), str(vars(judge)), str(err.value), caplog.text])
    assert "SELM_TEST_JUDGE_KEY" in repr(judge)
    assert secret not in shown
    assert "retry 1/5" in caplog.text


def test_missing_key_variable_is_a_config_error(server, monkeypatch):
    monkeypatch.delenv("SELM_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        llm(server, api_key_env="SELM_TEST_JUDGE_KEY")
    assert str(err.value) == "judge 'llm': api_key_env: the environment variable 'SELM_TEST_JUDGE_KEY' is not set"


def test_concurrency_is_bounded(server):
    def slow(body: dict[str, Any], n: int) -> Reply:
        time.sleep(0.1)
        return answer("6")

    server.reply = slow
    assert llm(server, mode="pointwise", concurrency=3).score(["q"] * 9, ["r"] * 9) == [6.0] * 9
    assert server.max_inflight == 3


def test_first_failure_stops_the_rest(server):
    # item 0 always fails with 500; with one worker, items 1-4 are cancelled before they are asked.
    def fail_first_item(body: dict[str, Any], n: int) -> Reply:
        if pointwise_response(body) == "bad":
            return 500, {"error": "x"}, {}
        return answer("4")

    server.reply = fail_first_item
    with pytest.raises(JudgeError, match=r"item 0: gave up after 2 attempts"):
        judge = llm(server, mode="pointwise", max_retries=1, concurrency=1)
        judge.score(["q"] * 5, ["bad", "ok", "ok", "ok", "ok"])
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"base_url": "localhost:8000"},
         "judge 'llm': base_url: must start with http:// or https:// (got 'localhost:8000')"),
        ({"pairwise_template": "{prompt} {response_a}"},
         "judge 'llm': pairwise_template must use exactly the fields ['prompt', 'response_a', 'response_b'], "
         "got ['prompt', 'response_a']"),
        ({"max_retries": -1}, "judge 'llm': max_retries: Input should be greater than or equal to 0 (got -1)"),
        ({"api_key": "sk-x"}, "judge 'llm': api_key: unknown key"),
    ],
)
def test_option_errors(spec, message):
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "llm", "base_url": "http://127.0.0.1:1/v1", "model": "m", **spec})
    assert str(err.value) == message


@pytest.mark.parametrize("text, verdict", [("A", 1.0), (" b\n", 0.0), ("**A**", 1.0), ("Response B.", 0.0),
                                           ("[[A]]", 1.0), ("After thinking, my verdict: [[B]]", 0.0)])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text", ["", "Both", "A or B", "[[A]] ... no, [[B]]", "A better answer is B"])
def test_parse_verdict_rejects(text):
    with pytest.raises(ValueError):
        parse_verdict(text)


@pytest.mark.parametrize("text, rating", [("7", 7.0), ("Rating: 8/10", 8.0), ("[[10]]", 10.0),
                                          ("score = 3.5", 3.5), ("Good answer. Rating: [[6]]", 6.0)])
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", ["", "0", "11", "seven", "7 or 8", "[[3]] then [[4]]"])
def test_parse_rating_rejects(text):
    with pytest.raises(ValueError):
        parse_rating(text)
