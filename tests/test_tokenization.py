"""Stage 1: the word-level tokenizer, trained byte-level BPE, and GPT-2's tokenizer (SPEC vectors)."""

import random

import pytest
from transformers import AutoTokenizer

from hf_scratchgpt.tokenization import SimpleTokenizer, load_gpt2_tokenizer, train_bpe_tokenizer

VERDICT_FIRST_50 = [
    40,
    367,
    2885,
    1464,
    1807,
    3619,
    402,
    271,
    10899,
    2138,
    257,
    7026,
    15632,
    438,
    2016,
    257,
    922,
    5891,
    1576,
    438,
    568,
    340,
    373,
    645,
    1049,
    5975,
    284,
    502,
    284,
    3285,
    326,
    11,
    287,
    262,
    6001,
    286,
    465,
    13476,
    11,
    339,
    550,
    5710,
    465,
    12036,
    11,
    6405,
    257,
    5527,
    27075,
    11,
]


class TestSimpleTokenizer:
    def test_spec_vectors(self):
        tok = SimpleTokenizer({"Hello": 64, ",": 455, "world": 78, "!": 467, "[UNK]": 987})
        assert tok.encode("Hello, world!") == [64, 455, 78, 467]
        assert tok.encode("Bye, world!") == [987, 455, 78, 467]

    def test_vocabulary_from_text_round_trips(self, shared_data):
        text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8")
        tok = SimpleTokenizer.from_text(text)
        assert len(tok) == 1130 + 4  # the book's 1,130 words plus [BOS], [EOS], [PAD], [UNK]
        sample = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
        # the book's regex decoder restores most spacing; quotes and apostrophes come back spaced, as in the book
        assert (
            tok.decode(tok.encode(sample)) == '" It\' s the last he painted, you know," Mrs. Gisburn said with '
            "pardonable pride."
        )
        assert "[UNK]" not in tok.decode(tok.encode(sample))

    def test_special_tokens(self):
        tok = SimpleTokenizer.from_text("a b c")
        ids = tok.encode("a zebra", add_bos=True, add_eos=True)
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and ids[2] == tok.unk_token_id
        assert tok.decode(ids) == "[BOS] a [UNK] [EOS]"
        assert tok.pad_token_id is not None

    def test_bad_vocab_and_ids(self):
        with pytest.raises(ValueError, match=r"\[UNK\]"):
            SimpleTokenizer({"a": 0})
        with pytest.raises(ValueError, match="same id"):
            SimpleTokenizer({"a": 0, "[UNK]": 0})
        with pytest.raises(ValueError, match="token id 99"):
            SimpleTokenizer.from_text("a b").decode([99])


ODD_STRINGS = [
    "",
    "   ",
    "héllo wörld ☃",
    "👩‍👩‍👧‍👦 🇩🇪 👍🏽",
    "日本語のテキスト、中文。한국어",
    "עברית العربية mixed RTL",
    "Z̵̡a̷l̶g̴o̵",
    "\x00\x01\x7f tab\tnew\r\nline\u200b\ufeff",
    "<|endoftext|> inside text",
]


class TestTrainedBPE:
    def test_round_trip_arbitrary_unicode(self, verdict_tokenizer):
        rng = random.Random(0)
        fuzz = [
            "".join(
                chr(
                    rng.choice(
                        [rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0xD7FF), rng.randrange(0xE000, 0x10FFFF)]
                    )
                )
                for _ in range(rng.randrange(1, 40))
            )
            for _ in range(200)
        ]
        for text in ODD_STRINGS + fuzz:
            ids = verdict_tokenizer(text)["input_ids"]
            assert verdict_tokenizer.decode(ids) == text, repr(text)

    def test_vocab_specials_and_save_load(self, verdict_tokenizer, tmp_path):
        tok = verdict_tokenizer
        assert len(tok) == 400
        assert tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.eos_token_id == 0
        assert tok("a <|endoftext|> b")["input_ids"].count(0) == 1  # one atomic token
        tok.save_pretrained(tmp_path)
        again = AutoTokenizer.from_pretrained(tmp_path)
        for text in ODD_STRINGS:
            assert again(text)["input_ids"] == tok(text)["input_ids"]
        assert again.eos_token_id == 0 and again.model_max_length == 32
        chat = again.apply_chat_template(
            [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
        )
        assert chat == (  # the book's Alpaca prompt (hf_scratchgpt.prompts), preamble included
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nHi\n\n### Response:\n"
        )

    def test_texts_and_files_give_the_same_tokenizer(self, shared_data):
        path = shared_data / "the-verdict.txt"
        from_file = train_bpe_tokenizer([path], vocab_size=300)
        from_text = train_bpe_tokenizer([path.read_text(encoding="utf-8")], vocab_size=300)
        assert from_file.get_vocab() == from_text.get_vocab()

    def test_bytes_never_seen_in_training_still_round_trip(self):
        tok = train_bpe_tokenizer(["aaaa bbbb aaaa bbbb"], vocab_size=300)
        assert tok.decode(tok("ünïcødé ✓")["input_ids"]) == "ünïcødé ✓"

    def test_bad_input(self, tmp_path):
        with pytest.raises(ValueError, match="vocab_size must be an integer >= 257"):
            train_bpe_tokenizer(["hello"], vocab_size=100)
        with pytest.raises(ValueError, match="no training text"):
            train_bpe_tokenizer([""], vocab_size=300)
        empty = tmp_path / "empty.txt"
        empty.write_text("")
        with pytest.raises(ValueError, match="no training text"):
            train_bpe_tokenizer([empty], vocab_size=300)
        with pytest.raises(FileNotFoundError, match="missing.txt"):
            train_bpe_tokenizer([tmp_path / "missing.txt"], vocab_size=300)
        bad = tmp_path / "latin1.txt"
        bad.write_bytes("caf\xe9 ok".encode("latin-1"))
        with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text \(byte offset 3"):
            train_bpe_tokenizer([bad], vocab_size=300)


class TestGPT2Tokenizer:
    def test_spec_vectors(self, shared_data):
        tok = load_gpt2_tokenizer(shared_data / "gpt2" / "encoder.json", shared_data / "gpt2" / "vocab.bpe")
        assert tok("Hello, I am")["input_ids"] == [15496, 11, 314, 716]
        ids = tok((shared_data / "the-verdict.txt").read_text(encoding="utf-8"))["input_ids"]
        assert len(ids) == 5145
        assert ids[:50] == VERDICT_FIRST_50
        assert len(tok) == 50257 and tok.eos_token_id == 50256
        assert tok.decode(tok("Akwirw ier")["input_ids"]) == "Akwirw ier"

    def test_folder_argument_and_save_load(self, shared_data, tmp_path):
        tok = load_gpt2_tokenizer(shared_data / "gpt2")
        tok.save_pretrained(tmp_path)
        assert AutoTokenizer.from_pretrained(tmp_path)("Hello, I am")["input_ids"] == [15496, 11, 314, 716]

    def test_bad_files(self, tmp_path, shared_data):
        with pytest.raises(FileNotFoundError, match="nope.json"):
            load_gpt2_tokenizer(tmp_path / "nope.json", shared_data / "gpt2" / "vocab.bpe")
        bad_vocab = tmp_path / "encoder.json"
        bad_vocab.write_text("[1, 2]")
        with pytest.raises(ValueError, match="encoder.json: expected a JSON object"):
            load_gpt2_tokenizer(bad_vocab, shared_data / "gpt2" / "vocab.bpe")
        bad_merges = tmp_path / "vocab.bpe"
        bad_merges.write_text("#version: 0.2\na b c\n")
        with pytest.raises(ValueError, match=r"vocab.bpe:2: expected two space-separated symbols"):
            load_gpt2_tokenizer(shared_data / "gpt2" / "encoder.json", bad_merges)


@pytest.mark.parametrize("which", ["verdict", "gpt2"])
def test_token_byte_lengths_add_up_to_the_texts_bytes(which, verdict_tokenizer, gpt2_tokenizer):
    from hf_scratchgpt.tokenization import token_byte_lengths

    tok = verdict_tokenizer if which == "verdict" else gpt2_tokenizer
    lengths = token_byte_lengths(tok)
    assert lengths.shape == (len(tok),) and lengths[tok.eos_token_id] == 0  # a special token is no text
    for text in ODD_STRINGS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        plain = text.replace(tok.eos_token, "")  # a special token written in the text is a token, not text
        assert int(lengths[ids].sum()) == len(plain.encode("utf-8")), text
