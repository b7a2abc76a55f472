"""A small transformer task for the tests: which keyword token occurs most often in a padded sequence.

Token ids (B, 16), 0 = padding, 2..119 words, keywords 2..5 decide the class (4 classes). A tiny
``TransformerClassifier`` (2 blocks, width 32) trains to high accuracy in a few seconds on one core.
"""

from __future__ import annotations

import torch
from torch import nn

import adaptc
from adaptc.tasks.zoo import TransformerClassifier

VOCAB, LEN, CLASSES = 120, 16, 4


def _split(n: int, g: torch.Generator) -> adaptc.Split:
    ids = torch.randint(6, VOCAB, (n, LEN), generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    lengths = torch.randint(6, LEN + 1, (n,), generator=g)
    for i in range(n):
        k = int(lengths[i])
        pos = torch.randperm(k, generator=g)[:3]
        ids[i, pos] = 2 + y[i]                            # the class keyword, three times
        other = torch.randint(0, CLASSES, (1,), generator=g)
        ids[i, torch.randperm(k, generator=g)[:1]] = 2 + other  # one distractor keyword
        ids[i, k:] = 0
    # the distractor may have overwritten a class keyword: the label is the most frequent keyword
    counts = torch.stack([(ids == 2 + c).sum(1) for c in range(CLASSES)], 1)
    return adaptc.Split((ids,), counts.argmax(1))


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return TransformerClassifier(vocab=VOCAB, num_classes=CLASSES, dim=32, depth=2, num_heads=4, ffn=64, max_len=LEN)


def make_task() -> adaptc.Task:
    g = torch.Generator().manual_seed(0)
    train, val, test = _split(1200, g), _split(300, g), _split(300, g)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(12):
            model.train()
            for xs, yb in train.batches(64, shuffle=True, generator=g):
                opt.zero_grad()
                nn.functional.cross_entropy(model(*xs), yb).backward()
                opt.step()
    finally:
        torch.set_num_threads(prev)
    return adaptc.Task(name="keywords", model=model.eval(), example_inputs=(test.inputs[0][:1].clone(),),
                       train=train, val=val, test=test, input_names=("ids",), output_names=("logits",),
                       description="most frequent keyword token (4 classes), tiny transformer")
