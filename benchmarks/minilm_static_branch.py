"""Experiment: would a static (Model2Vec-style) branch beside the MiniLM student lift retrieval? No training.

    python benchmarks/minilm_static_branch.py      (after benchmarks/minilm_bench.py; about 1 minute)

Static vectors: the teacher's output for each vocabulary token alone (``[CLS] t [SEP]``; the token's position, or
the mean of the three), averaged over a text's tokens, plain or with SIF weights a / (a + p(t)) (p: the token's
frequency in the task's training texts). Each is scored alone and added (weight alpha) to the embedding of the
pixel8 build's int8 student (``adaptc-out/minilm-bench/model.int8.onnx``, onnxruntime); R@1 on the validation,
test and out-of-domain pairs. Appends the run to ``benchmarks/results/minilm_static_branch.json``. Results:
docs/benchmarks/minilm.md (the student's own test R@1 was not lifted: the setting best on validation does not
transfer to test); ``--table`` rewrites its table there from the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(__import__("tables").main(["minilm_static_branch"]))

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minilm_bench import embed_onnx  # noqa: E402
from minilm_ood import out_of_domain_pairs  # noqa: E402

from adaptc.tasks import get_task  # noqa: E402
from adaptc.tasks.minilm import retrieval_scores  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "minilm_static_branch.json"
STUDENT = Path("adaptc-out/minilm-bench/model.int8.onnx")
CLS, SEP = 101, 102


def main() -> int:
    torch.set_num_threads(2)
    task = get_task("minilm")
    teacher = task.model.eval()
    splits = {"val": task.val, "test": task.test, "ood": out_of_domain_pairs()}
    vocab = teacher.bert.embeddings.word_embeddings.num_embeddings
    with torch.no_grad():
        tok, mean = [], []
        for i in range(0, vocab, 1024):
            ids = torch.arange(i, min(vocab, i + 1024))
            x = torch.stack([torch.full_like(ids, CLS), ids, torch.full_like(ids, SEP)], 1)
            h = teacher.bert(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            tok.append(h[:, 1])
            mean.append(h.mean(1))
    tables = {"token": torch.cat(tok), "mean": torch.cat(mean)}
    ids, mask = task.train.inputs
    counts = torch.bincount(ids[mask.bool()], minlength=vocab).double() + 1
    p = counts / counts.sum()

    def static(split, table: torch.Tensor, a: float) -> np.ndarray:  # noqa: ANN001
        ids, mask = split.inputs
        m = (mask * (ids != CLS) * (ids != SEP)).float()
        w = (a / (a + p[ids])).float() * m if a else m
        e = (table[ids] * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(e, dim=-1).numpy()

    def r1(e: np.ndarray, split) -> float:  # noqa: ANN001
        return round(retrieval_scores(e, len(split) // 2, (1,))[1], 4)

    student = {k: embed_onnx(STUDENT, task, s) for k, s in splits.items()}
    student = {k: e / np.linalg.norm(e, axis=1, keepdims=True) for k, e in student.items()}
    rows = [{"variant": "student", **{k: r1(e, splits[k]) for k, e in student.items()}}]
    for name, table in tables.items():
        for a in (0.0, 1e-3, 1e-4):
            st = {k: static(s, table, a) for k, s in splits.items()}
            rows.append({"variant": f"static {name} sif={a:g}", **{k: r1(e, splits[k]) for k, e in st.items()}})
            for alpha in (0.25, 0.5, 0.75, 1.0):
                rows.append({"variant": f"student + {alpha:g} x static {name} sif={a:g}",
                             **{k: r1(student[k] + alpha * st[k], splits[k]) for k in splits}})
    for r in rows:
        print(f"{r['variant']:40s} val {r['val']:.4f} test {r['test']:.4f} ood {r['ood']:.4f}")
    fused = [r for r in rows if r["variant"].startswith("student +")]
    best = max(fused, key=lambda r: r["val"])
    print("best on validation:", best)
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    runs.append({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "student": str(STUDENT),
                 "rows": rows, "best_on_validation": best})
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
