"""The LLM judge against a small OpenAI-compatible server run by the tests (`tests/judge_server.py`, real HTTP)."""

import re
import time
import traceback

import pytest

from hf_scratchgpt.judge import (
    JudgeUnavailable,
    chat_completions_url,
    judge_prompt,
    judge_responses,
    parse_score,
    query_judge,
)
from hf_scratchgpt.prompts import format_input

SECRET = "sk-test-SECRET-key-0123456789"

RECORDS = [
    {"instruction": "Rewrite the sentence using a simile.", "input": "The car is very fast.",
     "output": "The car is as fast as lightning.", "response": "The car is as fast as lightning."},
    {"instruction": "What type of cloud is typically associated with thunderstorms?", "input": "",
     "output": "The type of cloud typically associated with thunderstorms is cumulonimbus.",
     "response": "Cumulus clouds."},
    {"instruction": "Name the author of 'Pride and Prejudice'.", "input": "", "output": "Jane Austen.",
     "response": ""},
]  # fmt: skip


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# --- the prompt and the score ---------------------------------------------------------------------------------------


def test_judge_prompt_is_the_books_prompt():
    record = RECORDS[0]
    expected = (
        "Given the input `Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nRewrite the sentence using a simile.\n\n### Input:\nThe car is very fast.` "
        "and correct output `The car is as fast as lightning.`, score the model response `It is quick.` on a scale "
        "from 0 to 100, where 100 is the best score. Respond with the integer number only."
    )
    assert judge_prompt(record, "It is quick.") == expected
    no_input = judge_prompt(RECORDS[1], "Cumulus.")
    assert no_input.startswith(f"Given the input `{format_input(RECORDS[1])}` and correct output `")
    assert "### Input" not in no_input


def test_judge_prompt_matches_llms_from_scratch():
    ch07 = pytest.importorskip("llms_from_scratch.ch07")
    for record in RECORDS:
        book = (
            f"Given the input `{ch07.format_input(record)}` "
            f"and correct output `{record['output']}`, "
            f"score the model response `{record['response']}`"
            f" on a scale from 0 to 100, where 100 is the best score. "
            f"Respond with the integer number only."
        )
        assert judge_prompt(record, record["response"]) == book


def test_judge_prompt_names_a_missing_field():
    with pytest.raises(ValueError, match="^judge record has no 'output' field"):
        judge_prompt({"instruction": "x", "input": ""}, "y")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("85", 85),
        (" 100\n", 100),
        ("0", 0),
        ("+7", 7),
        ("Score: 85", 85),
        ("**42**", 42),
        ("90.", 90),
        ("I'd say 73%", 73),
        ("101", None),
        ("-5", None),
        ("Score: 105", None),
        ("85/100", None),  # two numbers: ambiguous
        ("8.5", None),  # not an integer
        ("eighty", None),
        ("", None),
        ("The response is accurate and complete, so I would give it 90.", None),  # long: not a short reply
        (None, None),  # a null content
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply) == expected


def test_chat_completions_url():
    assert chat_completions_url("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434/v1/chat/completions"
    assert chat_completions_url("http://127.0.0.1:11434/v1/") == "http://127.0.0.1:11434/v1/chat/completions"
    assert chat_completions_url("https://api.example.org/v1/chat/completions") == (
        "https://api.example.org/v1/chat/completions"
    )
    for bad in ("127.0.0.1:11434/v1", "file:///etc/passwd", "http:///v1", ""):
        with pytest.raises(ValueError, match=f"judge url must be an http\\(s\\) URL with a host .*, got {bad!r}$"):
            chat_completions_url(bad)


# --- over HTTP ------------------------------------------------------------------------------------------------------


def test_judge_responses_scores_and_mean_over_http(judge_server):
    progress = []
    result = judge_responses(
        RECORDS, url=judge_server.base_url, model="llama3", progress=lambda done, total: progress.append((done, total))
    )
    assert result == {
        "judge_model": "llama3",
        "scores": [100, 10, None],
        "mean_score": 55.0,
        "scored": 2,
        "unparsed": 1,
    }
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert len(judge_server.requests) == 3
    for request, record in zip(judge_server.requests, RECORDS):
        assert request["path"] == "/v1/chat/completions"
        assert request["payload"] == {
            "model": "llama3",
            "messages": [{"role": "user", "content": judge_prompt(record, record["response"])}],
            "temperature": 0,
            "seed": 123,
        }
        assert request["headers"]["Content-Type"] == "application/json"
        assert "Authorization" not in request["headers"]


def test_the_url_may_already_end_with_chat_completions(judge_server):
    for url in (judge_server.base_url + "/chat/completions", judge_server.base_url + "/"):
        assert query_judge(judge_prompt(RECORDS[0], RECORDS[0]["output"]), url=url, model="m") == "100"
    assert [request["path"] for request in judge_server.requests] == ["/v1/chat/completions"] * 2


def test_another_response_key_and_an_api_key(judge_server):
    records = [{**record, "model_response": record["output"]} for record in RECORDS]
    result = judge_responses(
        records, url=judge_server.base_url, model="judge", response_key="model_response", api_key=SECRET
    )
    assert result["scores"] == [100, 100, 100] and result["mean_score"] == 100.0 and result["unparsed"] == 0
    assert [request["headers"]["Authorization"] for request in judge_server.requests] == [f"Bearer {SECRET}"] * 3


def test_no_score_anywhere_gives_a_mean_of_none(judge_server):
    records = [{**record, "response": ""} for record in RECORDS[:2]]
    result = judge_responses(records, url=judge_server.base_url, model="llama3")
    assert result == {"judge_model": "llama3", "scores": [None, None], "mean_score": None, "scored": 0, "unparsed": 2}


def test_an_unreachable_endpoint_is_one_line_naming_the_url(closed_port):
    url = f"http://127.0.0.1:{closed_port}/v1"
    with pytest.raises(JudgeUnavailable) as caught:
        judge_responses(RECORDS, url=url, model="llama3", api_key=SECRET, timeout=5)
    message = str(caught.value)
    assert message == f"LLM judge at {url}/chat/completions is unavailable: connection refused (is the server running?)"
    assert "\n" not in message and SECRET not in _full_text(caught.value)


@pytest.mark.parametrize(
    ("model", "cause"),
    [
        ("http-500", r"HTTP 500 Internal Server Error \(boom; you sent Bearer \*\*\*\)"),  # the echoed key is hidden
        ("not-json", r"the reply is not JSON: '<html><body>Welcome to nginx!</body></html>'"),
        ("not-a-completion", r"the reply is not an OpenAI chat completion \(no choices\[0\]\.message\.content\)"),
        ("redirect", r"HTTP 302 Found"),  # not followed: the key would go along
    ],
)
def test_a_broken_endpoint_is_judge_unavailable(judge_server, model, cause):
    with pytest.raises(JudgeUnavailable) as caught:
        judge_responses(RECORDS, url=judge_server.base_url, model=model, api_key=SECRET)
    message = str(caught.value)
    assert re.fullmatch(
        rf"LLM judge at {re.escape(judge_server.base_url)}/chat/completions is unavailable: {cause}", message
    )
    assert SECRET not in _full_text(caught.value)
    assert len(judge_server.requests) == 1, "stops at the first request"


def test_a_timeout_is_judge_unavailable(judge_server):
    started = time.monotonic()
    with pytest.raises(JudgeUnavailable, match=r"is unavailable: timed out after 0\.3 s$"):
        query_judge("hello", url=judge_server.base_url, model="slow", timeout=0.3)
    assert time.monotonic() - started < 1.0


def test_a_failure_after_the_first_request_names_the_record(judge_server):
    with pytest.raises(JudgeUnavailable) as caught:
        judge_responses(RECORDS, url=judge_server.base_url, model="flaky", api_key=SECRET)
    assert str(caught.value).endswith(
        "is unavailable: HTTP 503 Service Unavailable (overloaded) (at record 2 of 3, after 1 replies)"
    )
    assert len(judge_server.requests) == 2


def test_a_userinfo_in_the_url_is_not_shown(closed_port):
    with pytest.raises(JudgeUnavailable) as caught:
        query_judge("hello", url=f"http://user:{SECRET}@127.0.0.1:{closed_port}/v1", model="m", timeout=5)
    assert str(caught.value).startswith(f"LLM judge at http://127.0.0.1:{closed_port}/v1/chat/completions is")
    assert SECRET not in _full_text(caught.value)


def test_bad_arguments_are_rejected_before_any_request(judge_server):
    with pytest.raises(ValueError, match="^no records to judge$"):
        judge_responses([], url=judge_server.base_url, model="m")
    with pytest.raises(ValueError, match=r"^judge record 1: field 'response' is NoneType None, expected"):
        judge_responses([RECORDS[0], {**RECORDS[1], "response": None}], url=judge_server.base_url, model="m")
    with pytest.raises(ValueError, match=r"^judge record 0: judge record has no 'instruction' field"):
        judge_responses([{"output": "x", "response": "y"}], url=judge_server.base_url, model="m")
    with pytest.raises(ValueError, match="^judge model must be a non-empty model name, got ''$"):
        query_judge("hello", url=judge_server.base_url, model="")
    with pytest.raises(ValueError, match="^judge timeout must be a positive number of seconds, got 0$"):
        query_judge("hello", url=judge_server.base_url, model="m", timeout=0)
    with pytest.raises(
        ValueError, match=r"^judge api_key must be printable ASCII without spaces \(the key is not shown\)$"
    ):
        query_judge("hello", url=judge_server.base_url, model="m", api_key="sk-with\nnewline")
    assert judge_server.requests == []
