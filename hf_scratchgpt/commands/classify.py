"""`scratchgpt classify` (label texts with a saved classifier) and `split-classifier-data` (stage 7.1)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from ..data.classification import SPLITS_FILE, ClassificationCollator
from ..data.tokenize import encode_truncated
from ..folders import atomic_output_dir, check_output_dir
from ..paths import model_folder_or_hub
from ..tokenization import load_tokenizer
from ..training.classify import ClassificationData


def load_classifier(model_dir: str) -> tuple[Any, Any]:
    """The classifier and tokenizer saved in `model_dir` (a folder or Hub id), in eval mode.

    Raises:
        FileNotFoundError: No model folder there.
        ValueError: The folder's model is not a sequence classifier (e.g. a causal LM).
    """
    where = model_folder_or_hub(model_dir)
    config = json.loads((where / "config.json").read_text(encoding="utf-8")) if isinstance(where, Path) else {}
    archs = config.get("architectures") or []
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ValueError(
            f"{model_dir} holds a {archs[0]}, not a classifier; fine-tune one with `scratchgpt finetune-classifier`"
        )
    model = AutoModelForSequenceClassification.from_pretrained(where).eval()
    return model, load_tokenizer(where)


@torch.no_grad()
def classify_texts(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 16) -> list[dict[str, Any]]:
    """Label and class probabilities of each text.

    Texts longer than the model's context keep their first tokens (the rule training used); the
    record says `"truncated": true`.

    Returns:
        One dict per text: `text`, `label`, `score` (its probability), `probabilities` by label, `truncated`.
    """
    context = model.config.max_position_embeddings
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = ClassificationCollator(pad_token_id=pad)
    id2label = model.config.id2label
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        ids, lengths = encode_truncated(tokenizer, chunk, context)  # as in training: with its end token
        batch = collate([{"input_ids": x, "label": 0} for x in ids])
        batch.pop("labels")
        probs = model(**batch).logits.float().softmax(-1)
        for text, n, p in zip(chunk, lengths, probs):
            best = int(p.argmax())
            results.append(
                {
                    "text": text,
                    "label": id2label[best],
                    "score": float(p[best]),
                    "probabilities": {id2label[i]: float(v) for i, v in enumerate(p)},
                    "truncated": n > context,
                }
            )
    return results


def classify(
    model_dir: str,
    texts: list[str],
    *,
    file: str | None = None,
    jsonl: bool = False,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Classify texts with a saved classifier: prints each label and the class probabilities.

    Args:
        model_dir: Folder of a classifier (e.g. runs/NAME/final) or a Hub id.
        texts: Texts to classify (quote each one).
        file: A UTF-8 file with one text per line (blank lines skipped), classified after `texts`.
        jsonl: Print one JSON object per text (text, label, score, probabilities, truncated) for scripts.
        batch_size: Texts per forward pass.

    Returns:
        One result per text (see `classify_texts`).
    """
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be > 0, got {batch_size}")
    texts = list(texts)
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"--file {file}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"--file {file}: not valid UTF-8 (byte offset {err.start})") from None
        texts += [line for line in lines if line.strip()]
    if not texts:
        raise ValueError("nothing to classify: give texts after MODEL_DIR or --file FILE")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"text {empty[0] + 1} is empty")
    model, tokenizer = load_classifier(model_dir)
    results = classify_texts(model, tokenizer, texts, batch_size)
    for r in results:
        if jsonl:
            print(json.dumps(r, ensure_ascii=False))
            continue
        probs = "  ".join(f"{label} {p:.3f}" for label, p in r["probabilities"].items())
        short = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        print(f"{r['label']}\t{r['score']:.3f}\t({probs})\t{short}")
    cut = sum(r["truncated"] for r in results)
    if cut:
        context = model.config.max_position_embeddings
        print(
            f"note: {cut} text(s) longer than {context} tokens were read up to their first {context}", file=sys.stderr
        )
    return results


@dataclass
class SplitDataConfig(ClassificationData):
    """Options of `scratchgpt split-classifier-data`: the data options of finetune-classifier, and where to write.

    Attributes:
        out: Folder to write: train.jsonl, validation.jsonl, test.jsonl, pretrain.txt and splits.json.
        overwrite: Replace an existing, non-empty out.
    """

    out: str | None = None
    overwrite: bool = False

    def validate(self) -> None:
        self.check_data_options()
        if not self.out:
            raise ValueError("out: give the folder to write (--out runs/NAME-data)")


def split_classifier_data(cfg: SplitDataConfig) -> Path:
    """Write the splits finetune-classifier draws, and the texts no held-out split holds (a pretraining corpus).

    `OUT/{train,validation,test}.jsonl` hold `{"text", "label"}` rows (label names); `finetune-classifier
    --data OUT` trains on them as they are. `OUT/pretrain.txt` holds, one per line, every text that is
    not in the validation or test split (the training split and the rows balancing left out, minus any
    text that also occurs in a held-out split), for pretraining on the domain without ever reading a
    held-out text. `OUT/splits.json` records the source, label set, options and counts.
    """
    check_output_dir(cfg.out, cfg.overwrite)
    splits, left_out = cfg.load_splits()
    names = splits["train"].features["label"].names
    held_out = {t for name in ("validation", "test") for t in splits[name]["text"]}
    candidates = list(splits["train"]["text"]) + (list(left_out["text"]) if left_out is not None else [])
    corpus = [t for t in candidates if t not in held_out]
    record = {
        "source": str(cfg.data),
        "labels": names,
        "balance": cfg.balance,
        "seed": cfg.seed,
        "fractions": {"validation": cfg.val_fraction, "test": cfg.test_fraction},
        "examples": {name: len(part) for name, part in splits.items()},
        "pretrain_texts": len(corpus),
        "pretrain_texts_dropped_as_held_out_duplicates": len(candidates) - len(corpus),
    }
    with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:
        for name, part in splits.items():
            rows = (
                json.dumps({"text": t, "label": names[y]}, ensure_ascii=False)
                for t, y in zip(part["text"], part["label"])
            )
            (tmp / f"{name}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        (tmp / "pretrain.txt").write_text("".join(t + "\n" for t in corpus), encoding="utf-8")
        (tmp / SPLITS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    counts = " / ".join(str(n) for n in record["examples"].values())
    print(f"train / validation / test: {counts} examples; {len(corpus):,} texts for pretraining -> {cfg.out}")
    return Path(cfg.out)
