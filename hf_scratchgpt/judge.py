"""An optional LLM judge (chapter 7): a chat model behind an OpenAI-compatible HTTP API scores model responses 0-100.

The book (`llms_from_scratch.ch07.generate_model_scores`) asks a local Llama 3 through Ollama to score each response
of the fine-tuned model against the correct output; this module does the same over any OpenAI-compatible
chat-completions endpoint (Ollama's `http://127.0.0.1:11434/v1`, vLLM, llama.cpp's server, OpenAI itself), with the
standard library only (`urllib`).

- `judge_prompt(entry, response)`: the book's prompt, exactly.
- `parse_score(text)`: the integer 0..100 in a judge's reply, or None.
- `query_judge(prompt, url=..., model=...)`: one chat completion (temperature 0, seed 123), its reply text.
- `judge_responses(records, url=..., model=...)`: scores and their mean for a list of records.
- `JudgeUnavailable`: the endpoint cannot be used; its message is one line naming the URL and the cause.

API key: sent as `Authorization: Bearer <key>` only when `api_key` is given. It is never read from the environment
(not even `OPENAI_API_KEY`): a key picked up implicitly would be sent to whatever URL the judge points at, a local
server included; a caller that wants the variable passes `api_key=os.environ.get("OPENAI_API_KEY")`. The key never
appears in an error message (error text that a server sends back is shown with the key replaced by `***`), and this
module logs nothing.

Redirects are not followed (a 3xx reply is a JudgeUnavailable): urllib would send the Authorization header on to
the redirect's target. Proxies: requests to a loopback host (127.0.0.1, localhost, ::1) go straight to it; other
hosts honour the usual `http_proxy`/`https_proxy`/`no_proxy` variables, as `urllib` does by default.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .prompts import format_input

CHAT_COMPLETIONS_PATH = "/chat/completions"
SEED = 123  # the book's seed for the judge
SHORT_REPLY_CHARS = 40  # parse_score looks for a lone integer only in replies up to this long
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_SNIPPET_CHARS = 160


class JudgeUnavailable(RuntimeError):
    """The judge endpoint cannot be used: unreachable, timed out, an HTTP error, or a reply that is no chat completion.

    The message is one line that names the endpoint's URL (without any credentials) and the cause.
    """


def judge_prompt(entry: Mapping[str, Any], response: str) -> str:
    """The book's chapter-7 prompt asking a judge to score `response` against the record's correct output.

    Args:
        entry: A record with `instruction`, an optional (possibly empty) `input` and `output`.
        response: The model's response to score.

    Returns:
        Exactly the prompt of `llms_from_scratch.ch07.generate_model_scores` (the input in the alpaca format).

    Raises:
        ValueError: The record has no `instruction` or no `output`.
    """
    for key in ("instruction", "output"):
        if key not in entry:
            raise ValueError(f"judge record has no {key!r} field: it needs 'instruction', 'output' and maybe 'input'")
    return (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{response}`"
        f" on a scale from 0 to 100, where 100 is the best score. "
        f"Respond with the integer number only."
    )


def parse_score(text: str | None) -> int | None:
    """The score in a judge's reply: an integer from 0 to 100, or None.

    The book does `int(reply)`; this accepts that (surrounding whitespace and a sign included) and, in a short reply
    (at most SHORT_REPLY_CHARS characters once stripped), a lone integer among other words: "Score: 85", "85.",
    "**85**", "85%". A reply with several numbers ("85/100", "8 out of 10") or a decimal one ("8.5") is ambiguous and
    gives None, as do a number outside 0..100, a longer reply without a bare integer, and None or a non-string.
    """
    if not isinstance(text, str):
        return None
    stripped = text.strip()
    if re.fullmatch(r"[-+]?\d+", stripped):
        value = int(stripped)
    elif len(stripped) <= SHORT_REPLY_CHARS:
        numbers = _NUMBER.findall(stripped)
        if len(numbers) != 1 or not re.fullmatch(r"[-+]?\d+", numbers[0]):
            return None
        value = int(numbers[0])
    else:
        return None
    return value if 0 <= value <= 100 else None


def chat_completions_url(url: str) -> str:
    """The chat-completions endpoint of a base URL: `url` + "/chat/completions", unless it already ends with that.

    Raises:
        ValueError: `url` is not an http(s) URL with a host.
    """
    parts = urllib.parse.urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"judge url must be an http(s) URL with a host (e.g. http://127.0.0.1:11434/v1), got {url!r}")
    base = url.strip().rstrip("/")
    return base if base.endswith(CHAT_COMPLETIONS_PATH) else base + CHAT_COMPLETIONS_PATH


def _shown_url(url: str) -> str:
    """`url` without user:password@ (safe to print)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _snippet(raw: bytes | str, api_key: str | None) -> str:
    """A short one-line excerpt of a server's text, with the API key (if any) replaced by ***."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if api_key:
        text = text.replace(api_key, "***")
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 3] + "..."


def _error_message(body: bytes, api_key: str | None) -> str:
    """The `error.message` (or `error`) of an OpenAI-style error body, else the body itself, as a snippet."""
    try:
        reply = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _snippet(body, api_key)
    error = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _snippet(error["message"], api_key)
    if isinstance(error, str):
        return _snippet(error, api_key)
    return _snippet(body, api_key)


def _describe(reason: object, timeout: float) -> str:
    """A short cause for a failed connection (the reason of a URLError or the exception itself)."""
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[0].lower() + reason.strerror[1:]
    return " ".join(str(reason).split()) or type(reason).__name__


def judge_reachable(url: str, timeout: float = 3.0) -> str | None:
    """Whether the judge's host accepts a connection now: None if it does, else the cause (a quick check before
    a long run; the judge is asked only at the end).

    Raises:
        ValueError: `url` is not an http(s) URL with a host.
    """
    parts = urllib.parse.urlsplit(chat_completions_url(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return _describe(err, timeout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the Authorization header to wherever a redirect points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def query_judge(prompt: str, *, url: str, model: str, api_key: str | None = None, timeout: float = 60.0) -> str:
    """Send one user message to an OpenAI-compatible chat-completions endpoint and return the reply's text.

    The request is a POST of `{"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
    "seed": 123}` (the book's settings: deterministic where the server honours them).

    Args:
        prompt: The user message (e.g. `judge_prompt(entry, response)`).
        url: The API's base URL, e.g. `http://127.0.0.1:11434/v1` (Ollama); "/chat/completions" is appended unless
            the URL already ends with it.
        model: The judge model's name on that server (e.g. "llama3").
        api_key: Sent as `Authorization: Bearer <api_key>` when given; never read from the environment.
        timeout: Seconds to wait for the connection and for the reply.

    Returns:
        `choices[0].message.content` of the reply ("" when the server sends a null content, e.g. a refusal).

    Raises:
        ValueError: A malformed url, an empty model name or a timeout that is not positive.
        JudgeUnavailable: The endpoint refused or dropped the connection, timed out, answered with an HTTP error, or
            sent something that is not an OpenAI chat completion; one line naming the URL and the cause.
    """
    endpoint = chat_completions_url(url)
    if not isinstance(model, str) or not model:
        raise ValueError(f"judge model must be a non-empty model name, got {model!r}")
    if not timeout > 0:
        raise ValueError(f"judge timeout must be a positive number of seconds, got {timeout!r}")
    shown = _shown_url(endpoint)
    payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "seed": SEED}
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        if not isinstance(api_key, str) or not re.fullmatch(r"[!-~]+", api_key):  # http.client would echo it
            raise ValueError("judge api_key must be printable ASCII without spaces (the key is not shown)")
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(endpoint, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST")
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    handlers = [_NoRedirect()] + ([urllib.request.ProxyHandler({})] if _is_loopback(host) else [])
    opener = urllib.request.build_opener(*handlers)

    def unavailable(cause: str) -> JudgeUnavailable:
        message = " ".join(f"LLM judge at {shown} is unavailable: {cause}".split())
        return JudgeUnavailable(message.replace(api_key, "***") if api_key else message)

    try:
        with opener.open(request, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = _error_message(exc.read(), api_key)
        except (OSError, http.client.HTTPException):  # the body could not be read
            detail = ""
        finally:
            exc.close()
        raise unavailable(f"HTTP {exc.code} {exc.reason}" + (f" ({detail})" if detail else "")) from None
    except urllib.error.URLError as exc:
        raise unavailable(_describe(exc.reason, timeout)) from None
    except (OSError, http.client.HTTPException) as exc:  # a timeout while reading, a dropped connection
        cause = _describe(exc, timeout) if isinstance(exc, OSError) else f"not a valid HTTP reply ({exc!r})"
        raise unavailable(cause) from None

    try:
        completion = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise unavailable(f"the reply is not JSON: {_snippet(body, api_key)!r}") from None
    try:
        content = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        error = completion.get("error") if isinstance(completion, dict) else None
        cause = f" (error: {_error_message(body, api_key)})" if error else ""
        raise unavailable(
            f"the reply is not an OpenAI chat completion (no choices[0].message.content){cause}"
        ) from None
    if content is None:
        return ""
    if not isinstance(content, str):
        raise unavailable(f"choices[0].message.content is {type(content).__name__}, expected a string")
    return content


def judge_responses(
    records: Sequence[Mapping[str, Any]],
    *,
    url: str,
    model: str,
    response_key: str = "response",
    api_key: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score every record's response with the judge (the book's `generate_model_scores`, over HTTP).

    Every record is checked before the first request. The judge is asked once per record, in order; a reply without
    a valid score (see `parse_score`) gives None for that record (the book prints it and leaves it out of the mean).

    Args:
        records: Records with `instruction`, `input` (may be empty or absent), `output` and the response to score.
        url: The API's base URL (see `query_judge`).
        model: The judge model's name on that server.
        response_key: The field of a record that holds the model's response.
        api_key: Sent as a Bearer token when given; never read from the environment.
        timeout: Seconds to wait for each reply.
        progress: Called as `progress(done, total)` after each scored record.

    Returns:
        {"judge_model": model, "scores": [int 0..100 or None, one per record], "mean_score": the mean of the valid
        scores (None if there are none), "scored": how many records got a valid score, "unparsed": how many did not}.

    Raises:
        ValueError: No records, or a record without the fields above (named with the record's index).
        JudgeUnavailable: The endpoint cannot be used; on the first request the message is `query_judge`'s, later
            the record at which it failed is added (the scores so far are not returned).
    """
    records = list(records)
    if not records:
        raise ValueError("no records to judge")
    prompts = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"judge record {i} is {type(record).__name__}, expected a mapping")
        response = record.get(response_key)
        if not isinstance(response, str):
            raise ValueError(
                f"judge record {i}: field {response_key!r} is {type(response).__name__} {response!r}, "
                "expected the model's response (a string)"
            )
        try:
            prompts.append(judge_prompt(record, response))
        except ValueError as exc:
            raise ValueError(f"judge record {i}: {exc}") from None
    scores: list[int | None] = []
    for i, prompt in enumerate(prompts):
        try:
            reply = query_judge(prompt, url=url, model=model, api_key=api_key, timeout=timeout)
        except JudgeUnavailable as exc:
            if i == 0:
                raise
            raise JudgeUnavailable(f"{exc} (at record {i + 1} of {len(prompts)}, after {i} replies)") from None
        scores.append(parse_score(reply))
        if progress is not None:
            progress(i + 1, len(prompts))
    valid = [score for score in scores if score is not None]
    return {
        "judge_model": model,
        "scores": scores,
        "mean_score": sum(valid) / len(valid) if valid else None,
        "scored": len(valid),
        "unparsed": len(scores) - len(valid),
    }


__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "JudgeUnavailable",
    "chat_completions_url",
    "judge_prompt",
    "judge_reachable",
    "judge_responses",
    "parse_score",
    "query_judge",
]
