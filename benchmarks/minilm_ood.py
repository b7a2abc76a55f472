"""An out-of-domain check for the MiniLM task that no build or experiment trains on.

500 (summary, body) pairs of docstrings of scipy, sympy and networkx (installed with scikit-learn and torch),
read with ``ast`` (never imported) and built like the task's stdlib pairs (summary >= 3 words, body >= 8).
The task's splits are all standard-library modules; its validation split is dominated by ``turtle`` and its test
split by ``_pydecimal``, so this says how much of the teacher's quality a student keeps on text of another
origin.
"""

from __future__ import annotations

import random

import torch

from adaptc.tasks.minilm import OUT_OF_DOMAIN_PACKAGES as PACKAGES  # the task keeps them out of training


def out_of_domain_pairs(n: int = 500, seed: int = 1):  # noqa: ANN201
    from adaptc.tasks import Split
    from adaptc.tasks.minilm import is_pair, load_tokenizer, summary_and_body, tokenize
    from adaptc.tasks.stdlib_corpus import package_docstrings

    summaries, bodies = [], []
    for d in package_docstrings(PACKAGES):
        summary, body = summary_and_body(d.text)
        if is_pair(summary, body):
            summaries.append(summary)
            bodies.append(body)
    idx = random.Random(seed).sample(range(len(summaries)), n)
    ids, mask = tokenize(load_tokenizer(), [summaries[i] for i in idx] + [bodies[i] for i in idx])
    return Split((ids, mask), torch.arange(n).repeat(2))
