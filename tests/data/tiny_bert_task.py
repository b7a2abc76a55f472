"""The minilm task's shape at test size: a Hugging Face ``BertModel`` (eager attention, no pooler) wrapped in
adaptc's ``SentenceEncoder``, built from a small ``BertConfig`` with seeded random weights (nothing downloaded),
and a retrieval task over synthetic token-id pairs scored as minilm is (R@1, per-query hits, padding trimmed).

A "summary" is 6-12 random word ids; its "body" holds the same words in another order plus as many others, so a
bag-of-words encoder already retrieves most bodies: the random teacher has a metric worth keeping. Needs the
``transformers`` package (the ``[text]`` extra).
"""

from __future__ import annotations

import torch

import adaptc
from adaptc.tasks.base import Split, paired_contrastive_loss, trim_padding
from adaptc.tasks.minilm import SentenceEncoder, recall_at_1, recall_at_1_hits

VOCAB, LEN, PAD = 300, 32, 0


def make_teacher(hidden: int = 64, layers: int = 4, heads: int = 4) -> SentenceEncoder:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=LEN, pad_token_id=PAD, attn_implementation="eager")
    return SentenceEncoder(BertModel(cfg, add_pooling_layer=False)).eval()


def _texts(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` summaries then their ``n`` bodies: (ids, mask), each row [CLS]=1, words, [SEP]=2, padding."""
    ids = torch.full((2 * n, LEN), PAD, dtype=torch.long)
    for i in range(n):
        k = int(torch.randint(6, 13, (1,), generator=g))
        words = torch.randint(3, VOCAB, (k,), generator=g)
        body = torch.cat([words[torch.randperm(k, generator=g)], torch.randint(3, VOCAB, (k,), generator=g)])
        for row, toks in ((i, words), (n + i, body[: LEN - 2])):
            ids[row, 0], ids[row, 1:len(toks) + 1], ids[row, len(toks) + 1] = 1, toks, 2
    return ids, (ids != PAD).long()


def _pairs(n: int, g: torch.Generator) -> Split:
    return Split(_texts(n, g), torch.arange(n).repeat(2))


def make_task() -> adaptc.Task:
    g = torch.Generator().manual_seed(0)
    train, val, test = _pairs(192, g), _pairs(48, g), _pairs(64, g)
    teacher = make_teacher()
    ex = (test.inputs[0][:1].clone(), test.inputs[1][:1].clone())
    return adaptc.Task(
        name="tiny-bert", model=teacher, example_inputs=ex, train=train, val=val, test=test, metric=recall_at_1,
        sample_scores=recall_at_1_hits, metric_name="R@1", input_names=("input_ids", "attention_mask"),
        output_names=("sentence_embedding",), kind="embedding", batch_transform=trim_padding,
        loss=paired_contrastive_loss, description="random tiny BERT sentence encoder, synthetic retrieval pairs",
    )
