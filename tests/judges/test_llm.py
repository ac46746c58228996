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
from selm.judges.llm import PAIRWISE_STRICT

Reply = tuple[int, Any, dict[str, str]]


def answer(text: Any, finish_reason: str = "stop") -> Reply:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
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
                        "max_backoff_s": 0.01, "max_wait_s": 5, "timeout_s": 5, "concurrency": 2, **options})


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
    assert body["max_tokens"] == 32 and "seed" not in body  # a verdict's budget; greedy needs no seed
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


def test_malformed_answer_is_asked_again_once_with_a_stricter_instruction(server):
    server.reply = lambda body, n: answer("Both are fine." if n == 0 else "[[B]]")
    assert llm(server, both_orders=False).compare(["q"], ["x"], ["y"]) == [0.0]
    first, second = (b["messages"][-1]["content"] for b in server.bodies())
    assert second == first + PAIRWISE_STRICT  # not the identical request, which greedy decoding repeats

    server.requests.clear()
    server.reply = lambda body, n: answer("I cannot decide.")
    with pytest.raises(JudgeError) as err:
        llm(server, max_retries=5, concurrency=1).compare(["q"], ["x"], ["y"])
    assert str(err.value) == ("judge llm 'judge-1': item 0 (order a, b): no usable answer, also when asked again "
                              "with a stricter instruction: no verdict (A or B) in the answer 'I cannot decide.'")
    assert len(server.requests) == 2  # once, then once more; the retry budget is for transport failures


def test_an_answer_cut_by_max_tokens_says_so(server):
    server.reply = lambda body, n: answer("Let me compare the two responses step by step. First,", "length")
    with pytest.raises(JudgeError, match=r"the answer was cut at max_tokens=32 \(raise it\)"):
        llm(server, mode="pointwise").score(["q"], ["r"])


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
        llm(server, api_key_env="SELM_TEST_JUDGE_KEY", both_orders=False, max_retries=5).compare(["q"], ["x"], ["y"])
    shown = " ".join([repr(judge), str(judge.config()), str(vars(judge)), str(err.value), caplog.text])
    assert "SELM_TEST_JUDGE_KEY" in repr(judge)
    assert secret not in shown
    assert "retrying 1/5" in caplog.text


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
        ({"answer_regex": "Verdict: [AB]"},
         "judge 'llm': answer_regex: needs a group, (...), around the verdict or rating (got 'Verdict: [AB]')"),
        ({"parameter_style": "max_completion_tokens", "temperature": 0.0},
         "judge 'llm': temperature: is not sent with parameter_style max_completion_tokens "
         "(reasoning models refuse it); remove it"),
        ({"max_wait_s": -1}, "judge 'llm': max_wait_s: Input should be greater than or equal to 0 (got -1)"),
        ({"on_overlong": "skip"}, "judge 'llm': on_overlong: Input should be 'truncate' or 'fail' (got 'skip')"),
    ],
)
def test_option_errors(spec, message):
    with pytest.raises(ConfigError) as err:
        build_judge({"kind": "llm", "base_url": "http://127.0.0.1:1/v1", "model": "m", **spec})
    assert str(err.value) == message




def test_parameter_styles(server):
    server.reply = lambda body, n: answer("6")
    llm(server, mode="pointwise", parameter_style="max_completion_tokens").score(["q"], ["r"])
    reasoning = server.bodies()[-1]
    assert reasoning["max_completion_tokens"] == 4096  # a reasoning model's budget includes its reasoning
    assert "max_tokens" not in reasoning and "temperature" not in reasoning
    assert isinstance(reasoning["seed"], int)  # such a model samples: seeded per request

    llm(server, mode="pointwise", temperature=0.7, max_tokens=8).score(["q", "q2"], ["r", "r"])
    sampled = server.bodies()[-2:]
    assert {(b["max_tokens"], b["temperature"]) for b in sampled} == {(8, 0.7)}
    assert "max_completion_tokens" not in sampled[0]
    assert sampled[0]["seed"] != sampled[1]["seed"]  # from each request's content
    llm(server, mode="pointwise", temperature=0.7, seed=None).score(["q"], ["r"])
    assert "seed" not in server.bodies()[-1]


def test_answer_regex(server):
    server.reply = lambda body, n: answer("Comparing... Winner=>B")
    assert llm(server, answer_regex=r"Winner=>([AB])", both_orders=False).compare(["q"], ["x"], ["y"]) == [0.0]


def test_retry_budget_is_a_time_and_every_retry_is_a_line(server, caplog):
    caplog.set_level(logging.WARNING, logger="selm.judges.llm")
    server.reply = lambda body, n: (503, {"error": "loading model"}, {})
    judge = llm(server, mode="pointwise", backoff_s=0.02, max_backoff_s=0.05, max_wait_s=0.3)
    with pytest.raises(JudgeError, match=r"item 0: gave up after \d+ attempts; last error: HTTP 503"):
        judge.score(["q"], ["r"])
    assert len(server.requests) >= 3  # the budget is time: no fixed count of attempts ends it
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(server.requests) - 1
    assert lines[0].startswith("judge llm 'judge-1': item 0: retrying 1 in 0.0s (0s of max_wait_s=0.3s used): "
                               "HTTP 503"), lines[0]


def _path_aware(server: ChatServer, status: int, message: str, when: Callable[[dict[str, Any], str], bool]):
    def reply(body: dict[str, Any], n: int) -> Reply:
        if when(body, server.requests[n]["path"]):
            return status, {"error": {"message": message}}, {}
        return answer("A")
    return reply


@pytest.mark.parametrize("setup, expected", [
    ({"base_url_suffix": ""}, "HTTP 404: {\"error\": {\"message\": \"Not Found\"}}; does the server serve the "
                              "model 'judge-1', and is base_url its API root (e.g. http://host:8000/v1)?"),
    ({"model": "judge-2"}, "does the server serve the model 'judge-2', and is base_url its API root"),
    ({"status": 401}, "is the key in $SELM_TEST_JUDGE_KEY right?"),
    ({"status": 400}, "does the model want parameter_style: max_completion_tokens?"),
    ({"down": True}, "connection failed: "),
])
def test_start_up_check_names_the_misconfiguration(server, monkeypatch, setup, expected):
    monkeypatch.setenv("SELM_TEST_JUDGE_KEY", "sk-x")
    status = setup.get("status", 404)
    messages = {404: "Not Found", 401: "bad key",
                400: "Unsupported parameter: 'max_tokens' is not supported with this model. "
                     "Use 'max_completion_tokens' instead."}
    server.reply = _path_aware(server, status, messages[status], lambda body, path: (
        not path.startswith("/v1/") or body["model"] != "judge-1" or status != 404))
    base_url = server.base_url[:-len("/v1")] if "base_url_suffix" in setup else server.base_url
    if setup.get("down"):
        base_url = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    judge = llm(server, base_url=base_url, model=setup.get("model", "judge-1"), api_key_env="SELM_TEST_JUDGE_KEY")
    with pytest.raises(JudgeError) as err:
        judge.check()
    message = str(err.value)
    assert message.startswith(f"judge {judge.name}: start-up check failed: ") and "\n" not in message
    assert message.endswith("(check_at_start: false skips this check)")
    if setup.get("down"):
        assert "is a chat-completions server running at http://127.0.0.1:9/v1?" in message
    else:
        assert expected in message and len(server.requests) == 1
    assert "sk-x" not in message


def test_start_up_check_passes_a_busy_server_and_can_be_skipped(server, caplog):
    llm(server).check()
    assert len(server.requests) == 1 and server.bodies()[0]["max_tokens"] == 32  # the run's parameters
    server.reply = lambda body, n: (503, {"error": "busy"}, {})
    llm(server).check()  # the server is there; the real requests retry
    assert "start-up check: HTTP 503" in caplog.text
    llm(server, check_at_start=False).check()
    assert len(server.requests) == 2


def overflowing(limit_chars: int) -> Callable[[dict[str, Any], int], Reply]:
    """A server whose model holds ``limit_chars`` // 4 tokens, 4 characters a token, vLLM's message."""
    def reply(body: dict[str, Any], n: int) -> Reply:
        tokens = len(body["messages"][-1]["content"]) // 4
        if tokens + body["max_tokens"] > limit_chars // 4:
            message = (f"This model's maximum context length is {limit_chars // 4} tokens. However, you requested "
                       f"{tokens + body['max_tokens']} tokens ({tokens} in the messages, {body['max_tokens']} in "
                       f"the completion). Please reduce the length of the messages or completion.")
            return 400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400}, {}
        return answer("A" if "short" in slot(body, "A") else "B")
    return reply


def test_overlong_prompt_is_shortened_to_the_context(server):
    server.reply = overflowing(1200)
    long = "long " * 2000
    assert llm(server, both_orders=False).compare(["q"], ["short answer"], [long]) == [1.0]
    sent = server.bodies()[-1]  # the request that was answered
    assert len(sent["messages"][-1]["content"]) // 4 + 32 <= 300
    assert slot(sent, "B") == long[:len(slot(sent, "B")) - len(" [...]")] + " [...]"  # the long text is cut...
    assert slot(sent, "A") == "short answer"  # ...and the short one kept whole

    server.requests.clear()
    with pytest.raises(JudgeError, match=r"item 0 \(order a, b\): HTTP 400: .*maximum context length is 300 tokens.* "
                                         r"\(not retried: the prompt is longer than the judge's context"):
        llm(server, on_overlong="fail", concurrency=1).compare(["q"], [long], ["short"])
    assert len(server.requests) == 1

    server.requests.clear()
    assert llm(server, max_input_chars=1000).compare(["q"], ["short answer"], [long]) == [1.0]
    assert len(server.requests) == 2 and all(len(b["messages"][-1]["content"]) <= 1000 for b in server.bodies())


def sampled_verdict(body: dict[str, Any], n: int) -> Reply:
    """A judge that samples: its verdict depends on the request's seed and content only."""
    digest = hash((body["seed"], body["messages"][-1]["content"]))
    return answer("A" if digest % 2 else "B")


def test_kept_answers_make_a_resumed_call_equal_an_uninterrupted_one(server, tmp_path):
    prompts, candidates = ["p1", "p2"], [["x", "yy", "zzz"], ["u", "vv", "www"]]
    server.reply = sampled_verdict
    options = {"temperature": 0.8, "concurrency": 1}
    uninterrupted = llm(server, **options).rank_scores_batch(prompts, candidates)
    total = len(server.requests)
    assert total == 12  # 3 pairs × 2 orders × 2 prompts

    server.requests.clear()
    server.reply = lambda body, n: (401, {"error": "key revoked"}, {}) if n == 5 else sampled_verdict(body, n)
    path = tmp_path / "judge_answers.0.jsonl"
    judge = llm(server, **options)
    with pytest.raises(JudgeError, match="HTTP 401"), judge.keeping_answers(path):
        judge.rank_scores_batch(prompts, candidates)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(kept) == 5 and {row["answer"] for row in kept} <= {"A", "B"}

    server.requests.clear()
    server.reply = sampled_verdict
    resumed = llm(server, **options)
    with resumed.keeping_answers(path):
        assert resumed.rank_scores_batch(prompts, candidates) == uninterrupted
    assert len(server.requests) == total - 5  # the kept answers were not asked again
    assert len(path.read_text().splitlines()) == total


def test_concurrency_raises_requests_per_second(server):
    def slow(body: dict[str, Any], n: int) -> Reply:
        time.sleep(0.05)  # a server answering each request in 50 ms, many at once
        return answer("6")

    server.reply = slow
    rates = {}
    for concurrency in (1, 4):
        start = time.perf_counter()
        llm(server, mode="pointwise", concurrency=concurrency).score(["q"] * 16, ["r"] * 16)
        rates[concurrency] = 16 / (time.perf_counter() - start)
    print(f"requests/s against a 50 ms server: {rates[1]:.1f} (concurrency 1), {rates[4]:.1f} (concurrency 4)")
    assert rates[4] > 2 * rates[1], rates  # ideally 4x; a generous margin for a loaded machine


def test_an_ensemble_checks_and_keeps_the_answers_of_its_llm_members(server, tmp_path):
    """A composite judge (ensemble, vector) passes the start-up check and the kept answers on to
    its members, each member's answers in a file of its own."""
    member = {"kind": "llm", "mode": "pointwise", "base_url": server.base_url, "model": "judge-1", "backoff_s": 0.001,
              "max_backoff_s": 0.01, "max_wait_s": 5, "timeout_s": 5}
    server.reply = lambda body, n: answer("6")
    for kind in ("ensemble", "vector"):
        server.requests.clear()
        judge = build_judge({"kind": kind, "judges": [member, {**member, "model": "judge-1"}]})
        judge.check()
        assert len(server.requests) == 2  # one check request per member
        path = tmp_path / kind / "judge_answers.0.jsonl"
        with judge.keeping_answers(path):
            first = judge.score(["p1", "p2"], ["a", "b"])
        asked = len(server.requests)
        assert sorted(p.name for p in path.parent.iterdir()) == ["judge_answers.0.member0.jsonl",
                                                                 "judge_answers.0.member1.jsonl"]
        with judge.keeping_answers(path):
            assert judge.score(["p1", "p2"], ["a", "b"]) == first
        assert len(server.requests) == asked  # every answer was kept: none asked again
    down = build_judge({"kind": "ensemble", "judges": [{**member, "base_url": "http://127.0.0.1:9/v1"}]})
    with pytest.raises(JudgeError, match="start-up check failed"):
        down.check()
