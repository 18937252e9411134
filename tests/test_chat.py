"""`scratchgpt chat`: the REPL on a pseudo-terminal, history within the context, Ctrl-C, and chat via `pipeline`."""

import codecs
import importlib
import io
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer, pipeline

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.cli import main
from hf_scratchgpt.folders import write_model_folder
from hf_scratchgpt.tokenization import train_bpe_tokenizer

from .conftest import SHARED_DATA, tiny_config

chat_module = importlib.import_module("hf_scratchgpt.commands.chat")  # the package exports the function `chat`

CONTEXT, REPLY_TOKENS = 256, 16  # REPLY_TOKENS <= CONTEXT // 2, so it is the reply budget
SYSTEM, QUESTION, ANSWER = "Be brief.", "Who painted it?", "Gisburn did."
PROMPT, REPLY = "you> ", "gpt> "
CUT = "(the reply reached its limit of"
DROPPED = re.compile(rf"\(dropped the (?:(\d+) )?oldest turns? to fit the {CONTEXT}-token context\)")
# The child makes the pseudo-terminal its controlling terminal, so Ctrl-C (\x03) typed there is a real SIGINT.
CHILD = (
    "import fcntl, runpy, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "runpy.run_module('hf_scratchgpt', run_name='__main__', alter_sys=True)"
)


def conversation(*turns: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"] * len(turns)
    return [{"role": "system", "content": SYSTEM}] + [{"role": r, "content": t} for r, t in zip(roles, turns)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny chat model (alpaca template) that learned one exchange: QUESTION -> ANSWER, then the end token."""
    tok = train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=300, chat_template="alpaca")
    ids = tok.apply_chat_template(conversation(QUESTION, ANSWER), return_dict=True, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(
        tiny_config(vocab_size=len(tok), context_length=CONTEXT, eos_token_id=0, bos_token_id=0, pad_token_id=0)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    out = tmp_path_factory.mktemp("chat") / "model"
    card = {"weights": "trained on one exchange", "provenance": "tests/test_chat.py"}
    return write_model_folder(out, model.eval(), tok, command="chat test fixture", card_fields=card)


@pytest.fixture(scope="module")
def loaded(folder):
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def greedy(loaded, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """The greedy reply to a conversation (computed here, not by the chat) and whether it was cut by the limit."""
    model, tok = loaded
    ids = prompt_ids(tok, messages)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=REPLY_TOKENS, do_sample=False)
    new = out[0, ids.shape[1] :].tolist()
    return tok.decode(new, skip_special_tokens=True), new[-1] != tok.eos_token_id


def prompt_ids(tok, messages: list[dict[str, str]]) -> torch.Tensor:
    return tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")[
        "input_ids"
    ]


def test_the_fixture_model_answers_its_question_and_stops(loaded):
    assert greedy(loaded, conversation(QUESTION)) == (ANSWER, False)


class Terminal:
    """`python -m hf_scratchgpt chat ...` on a pseudo-terminal; every read has a deadline, so a hang fails."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        env = dict(os.environ, TERM="dumb")  # HF_HUB_OFFLINE and HF_HOME come from conftest
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, "chat", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            # a test runner may ignore SIGINT (pytest-xdist's workers do), and an ignored SIGINT is inherited:
            # give the chat the default, as in a terminal, so Python turns Ctrl-C into KeyboardInterrupt
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        os.close(slave)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buffer = ""
        self.transcript = ""

    def _read(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the other side is closed
            data = b""
        text = self.decoder.decode(data)
        self.transcript += text
        self.buffer = (self.buffer + text).replace("\r\n", "\n")
        return bool(data)

    def read_until(self, marker: str, timeout: float = 90) -> str:
        """The output up to and including `marker`."""
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            if time.monotonic() > deadline or not self._read(deadline):
                pytest.fail(f"no {marker!r} in the chat's output within {timeout}s; it said:\n{self.transcript}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def output_within(self, timeout: float) -> bool:
        """Whether a new line of output arrives within `timeout` seconds (it stays in the buffer)."""
        deadline = time.monotonic() + timeout
        while "\n" not in self.buffer and time.monotonic() < deadline:
            if not self._read(deadline):
                break
        return "\n" in self.buffer

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def say(self, line: str) -> str:
        """Type a line and return everything up to the next prompt."""
        self.type(line + "\n")
        return self.read_until(PROMPT)

    def finish(self, timeout: float = 60) -> int:
        """The exit status, once the output is read to its end."""
        deadline = time.monotonic() + timeout
        while self._read(deadline) and time.monotonic() < deadline:
            pass
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the chat did not end within {timeout}s; it said:\n{self.transcript}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def parse_reply(chunk: str) -> tuple[str, str, bool]:
    """`(notes before the reply, the streamed reply, whether a cut note followed)` of one turn's output."""
    notes, sep, body = chunk.partition(REPLY)
    assert sep, f"no reply in {chunk!r}"
    body = body.removesuffix(PROMPT)
    if CUT in body:
        reply, _, note = body.rpartition("\n" + CUT)
        assert note.endswith("tokens and was cut)\n"), body
        return notes, reply, True
    assert body.endswith("\n"), body
    return notes, body[:-1], False


@pytest.fixture
def terminal():
    sessions: list[Terminal] = []

    def start(*args: str) -> Terminal:
        sessions.append(Terminal(*args))
        return sessions[-1]

    yield start
    for session in sessions:
        session.close()


def test_chat_streams_greedy_replies_keeps_the_history_in_the_context_and_exits(folder, loaded, terminal):
    _, tok = loaded
    term = terminal(str(folder), "--system", SYSTEM, "--max-new-tokens", str(REPLY_TOKENS))
    banner = term.read_until(PROMPT)
    assert f"{CONTEXT}-token context" in banner and "/reset" in banner and "/exit" in banner

    history: list[str] = []  # what the chat should remember: user, assistant, user, ...
    drops: list[int] = []

    def turn(message: str) -> str:
        nonlocal history
        notes, reply, cut = parse_reply(term.say(message))
        match = DROPPED.search(notes)
        dropped = int(match.group(1) or 1) if match else 0
        kept = history[2 * dropped :]
        fits = prompt_ids(tok, conversation(*kept, message)).shape[1] + REPLY_TOKENS
        assert fits <= CONTEXT, f"the prompt after dropping {dropped} turns does not leave room for the reply"
        if dropped:  # and no more than needed: one turn more would not have fit
            kept_one_more = history[2 * dropped - 2 :]
            assert prompt_ids(tok, conversation(*kept_one_more, message)).shape[1] + REPLY_TOKENS > CONTEXT
        assert (reply, cut) == greedy(loaded, conversation(*kept, message)), term.transcript
        history = kept + [message, reply]
        drops.append(dropped)
        return reply

    assert turn(QUESTION) == ANSWER
    for message in ("Hi.", "Why?", "And?", "Who?", "Hi."):  # short turns: several fit, the oldest go first
        turn(message)
    assert drops[-1] == 1 and len(history) > 4, term.transcript
    turn(  # a long message pushes out several turns at once
        "Tell me all about the studio, the portrait of Jack Gisburn, what Mrs. Thwing said of it at the villa, "
        "why he stopped painting when he married her, and what Stroud would have said of it all."
    )
    assert drops[-1] >= 2, term.transcript
    turn("Hi.")

    too_long = term.say("Tell me everything about the picture. " * 20)
    assert REPLY not in too_long
    (note,) = [line for line in too_long.splitlines() if "does not fit" in line]
    assert f"{CONTEXT}-token context" in note and "not sent" in note
    turn("Who was Stroud?")  # still works, with the history as it was (`turn` checks the reply against it)

    assert "(history cleared)" in term.say("/reset")
    history = []
    assert turn(QUESTION) == ANSWER and len(history) == 2  # a fresh conversation again
    help_text = term.say("/help")
    assert "/reset" in help_text and "/exit" in help_text and REPLY not in help_text
    assert "unknown command /bye" in term.say("/bye")
    term.type("/exit\n")
    assert term.finish() == 0
    assert "Traceback" not in term.transcript


def test_ctrl_c_at_the_prompt_ends_the_chat_with_status_0(folder, terminal):
    term = terminal(str(folder))
    term.read_until(PROMPT)
    term.type("\x03")  # Ctrl-C, turned into SIGINT by the terminal
    # CPython's input() notices a Ctrl-C that lands between writing the prompt and starting to read only at the
    # next key; typing at once, the test can hit that window, so it presses again (as a user would) while the
    # chat has not answered (it answers with a new line).
    for _ in range(5):
        if term.output_within(3.0):
            break
        term.type("\x03")
    assert term.finish() == 0
    assert "Traceback" not in term.transcript


@pytest.fixture
def default_sigint():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal (pytest-xdist's workers ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_reply_stops_it_and_forgets_the_exchange(folder, monkeypatch, capsys, default_sigint):
    original = TextStreamer.on_finalized_text
    interrupts = []

    def press_ctrl_c_once(self, text, stream_end=False):
        original(self, text, stream_end)
        if text and not interrupts:
            interrupts.append(text)
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the middle of the reply

    rendered: list[list[dict[str, str]]] = []
    prompt_ids_of = chat_module._prompt_ids
    monkeypatch.setattr(
        chat_module, "_prompt_ids", lambda tok, messages: rendered.append(messages) or prompt_ids_of(tok, messages)
    )
    monkeypatch.setattr(TextStreamer, "on_finalized_text", press_ctrl_c_once)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\n{QUESTION}\n"))  # then end of input (Ctrl-D)

    assert main(["chat", str(folder), "--system", SYSTEM, "--max-new-tokens", str(REPLY_TOKENS)]) == 0
    out, err = capsys.readouterr()
    assert interrupts and ANSWER.startswith(interrupts[0])  # the first reply was stopped after its first word
    first, second = out.split(REPLY)[1:]
    assert first.startswith(interrupts[0]) and ANSWER not in first
    assert second.startswith(ANSWER + "\n")
    assert "(reply stopped; this question and the partial reply are not kept in the history)" in err
    assert rendered[-1] == conversation(QUESTION)  # the second question came with no trace of the first


def test_any_chat_template_through_another_tokenizer(folder, loaded, tmp_path, monkeypatch, capsys):
    model, tok = loaded
    custom = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    custom += "{% if add_generation_prompt %}assistant:{% endif %}"
    tok_dir = tmp_path / "tok"
    other = AutoTokenizer.from_pretrained(folder)
    other.chat_template = custom
    other.save_pretrained(tok_dir)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello there\n/exit\nnot read\n"))
    assert main(["chat", str(folder), "--tokenizer", str(tok_dir), "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "custom chat template" in out
    ids = other.apply_chat_template([{"role": "user", "content": "Hello there"}], add_generation_prompt=True)
    ids = torch.tensor([ids["input_ids"]])
    expected = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1] :]
    assert out.split(REPLY)[1] == tok.decode(expected, skip_special_tokens=True) + "\n" + PROMPT


def test_a_folder_without_a_chat_template_is_one_clear_error(folder, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    (plain / "chat_template.jinja").unlink()
    assert main(["chat", str(plain)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(plain) in err
    assert "no chat template" in err and "scratchgpt finetune-instruct" in err


def test_chat_through_the_text_generation_pipeline(folder):
    pipe = pipeline("text-generation", model=str(folder), trust_remote_code=True)
    messages = conversation(QUESTION)
    (result,) = pipe(messages, max_new_tokens=REPLY_TOKENS, do_sample=False)
    assert result["generated_text"] == messages + [{"role": "assistant", "content": ANSWER}]


def test_a_temperature_samples_reproducibly_from_the_seed(folder, monkeypatch, capsys):
    def replies(seed: int) -> list[str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTION}\nHi.\n"))
        args = ["chat", str(folder), "--temperature", "5", "--top-k", "50", "--max-new-tokens", "12"]
        assert main([*args, "--seed", str(seed)]) == 0
        return capsys.readouterr().out.split(REPLY)[1:]

    first = replies(1)
    assert replies(1) == first
    assert replies(2) != first  # so it did sample: greedy would answer the same whatever the seed
