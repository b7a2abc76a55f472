"""Experiment: does more unlabelled text (third-party docstrings) lift the MiniLM student's test R@1?

    python benchmarks/minilm_extra_text.py [N_EXTRA=20000] [EPOCHS=2]

Starts from the final student of the pixel8 build that ``benchmarks/minilm_bench.py`` made
(``adaptc-out/minilm-bench``), fine-tunes it with embedding distillation (MSE + cosine to the teacher's
embedding; no teacher-output cache: only the teacher's embeddings are kept) on the train texts plus N
docstrings of installed third-party packages (read with ``ast``, never imported), and prints test R@1 in torch
(fp32) every 300 steps; appends the run to ``benchmarks/results/minilm_extra_text.json``. About 20 minutes
for N=20000 on 2 cores (the teacher embeds ~50 texts/s). Results: README, MiniLM section.

    python benchmarks/minilm_extra_text.py --hybrid [N_EXTRA=5000] [EPOCHS=3]

The other question: the build's recipe (adaptc's trainer, full hybrid loss, teacher cache) from the pixel8
build's skeleton (2 of 6 layers, x0.5), on the train texts plus N third-party docstrings (unlabelled: they join
the cache and the distillation terms, not the InfoNCE pairs); prints validation R@1 per epoch and test R@1 / R@10
at the end, and appends the run. About 10 minutes for N=5000 and 3 epochs (8.5 GB peak); the cache grows with
the square of the text length (third-party docstrings are twice as long as the stdlib's): N=20000 would need
17 GB even for the two teacher layers the student reads.
"""
import os, sys, time, re, random, json
import numpy as np, torch, torch.nn.functional as F
from pathlib import Path
torch.set_num_threads(2)
from adaptc.tasks import get_task
from adaptc.tasks.minilm import load_tokenizer, tokenize, recall_at_1
from adaptc.tasks.stdlib_corpus import _scan
from adaptc.search.trials import TrialStore
HYBRID = len(sys.argv) > 1 and sys.argv[1] == "--hybrid"
args = sys.argv[2:] if HYBRID else sys.argv[1:]
N_EXTRA = int(args[0]) if args else (5000 if HYBRID else 20000)
EPOCHS = float(args[1]) if len(args) > 1 else (3 if HYBRID else 2)
PACKAGES = ("numpy", "scipy", "torch", "transformers", "onnx", "sympy", "pandas", "sklearn", "matplotlib",
            "networkx", "jinja2", "pydantic", "rich", "typer", "click", "tokenizers", "coremltools", "mpmath", "yaml")
RESULTS = Path(__file__).resolve().parent / "results" / "minilm_extra_text.json"
t0 = time.time()
task = get_task("minilm")
teacher = task.model.eval()
tok = load_tokenizer()


def third_party_docstrings(n: int) -> list[str]:
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    docs = []
    for pkg in PACKAGES:
        d = os.path.join(site, pkg)
        if os.path.isdir(d):
            docs += [" ".join(x.text.split()) for x in _scan(d)]
    random.Random(0).shuffle(docs)
    return [d for d in docs if len(d.split()) >= 4][:n]


def append(run: dict) -> None:
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    runs.append({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **run,
                 "seconds": round(time.time() - t0)})
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")


if HYBRID:
    import dataclasses

    from adaptc.distill.trainer import DistillConfig, distill, predict_torch
    from adaptc.slim import block_importance, extract_skeleton
    from adaptc.tasks import Split
    from adaptc.tasks.minilm import SEARCH_DEFAULTS, retrieval_scores

    docs = third_party_docstrings(N_EXTRA)
    ids_x, mask_x = tokenize(tok, docs)
    tr = task.train
    train = Split((torch.cat([tr.inputs[0], ids_x]), torch.cat([tr.inputs[1], mask_x])),
                  torch.cat([tr.targets, torch.full((len(docs),), -1)]))  # -1: unlabelled
    imp = block_importance(teacher, task.val.subset(slice(0, 256)).inputs)  # as the search measures it
    sk = extract_skeleton(teacher, task.example_inputs, width=0.5, drop=4, channel_multiple=8, importance=imp)
    cfg = DistillConfig(epochs=int(EPOCHS), threads=2, **SEARCH_DEFAULTS["distill"])
    res = distill(sk.model, teacher, dataclasses.replace(task, train=train), cfg,
                  on_epoch=lambda e, v: print(f"epoch {e} val R@1 {v:.4f} [{time.time() - t0:.0f}s]", flush=True))

    def scores(split) -> dict:  # noqa: ANN001
        return retrieval_scores(predict_torch(res.model, split, transform=task.batch_transform), len(split) // 2)

    te, va = scores(task.test), scores(task.val)
    print("test R@1 / R@10", te[1], te[10], "val", va[1], va[10], flush=True)
    append({"mode": "hybrid from the skeleton w0.5-d4", "n_extra": len(docs), "epochs": EPOCHS, "texts": len(train),
            "val_curve": [h.get("val") for h in res.history], "val_r1": va[1], "val_r10": va[10],
            "test_r1": te[1], "test_r10": te[10]})
    sys.exit(0)

student = TrialStore.open_final(Path(__file__).resolve().parent.parent / "adaptc-out" / "minilm-bench").train()
def emb(model, ids, mask, bs=128):
    out = []
    with torch.no_grad():
        for i in range(0, len(ids), bs):
            m = mask[i:i+bs]; L = int(m.sum(1).max())
            out.append(model(ids[i:i+bs, :L], m[:, :L]))
    return torch.cat(out)
def r1(model):
    model.eval(); e = emb(model, *task.test.inputs).numpy(); model.train()
    return recall_at_1(e, task.test)
start, curve = r1(student), []
print("teacher test R@1", r1(teacher), "student start", start, flush=True)
docs = third_party_docstrings(N_EXTRA)
ids_x, mask_x = tokenize(tok, docs)
ids = torch.cat([task.train.inputs[0], ids_x]); mask = torch.cat([task.train.inputs[1], mask_x])
order = torch.argsort(mask.sum(1))
ids, mask = ids[order], mask[order]
t1 = time.time()
temb = emb(teacher, ids, mask)
print("teacher embeddings", len(ids), round(time.time() - t1), "s", flush=True)
opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.01)
bs = 64
batches = [torch.arange(i, min(i + bs, len(ids))) for i in range(0, len(ids), bs)]
steps = int(len(batches) * EPOCHS)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-4, total_steps=steps, pct_start=0.05)
g = torch.Generator().manual_seed(0)
step = 0
while step < steps:
    for j in torch.randperm(len(batches), generator=g).tolist():
        if step >= steps: break
        b = batches[j]; m = mask[b]; L = int(m.sum(1).max())
        s = student(ids[b, :L], m[:, :L]); t = temb[b]
        loss = F.mse_loss(s, t) * 384 + (1 - (s * t).sum(1)).mean()
        opt.zero_grad(); loss.backward(); opt.step(); sched.step(); step += 1
        if step % 300 == 0:
            curve.append((step, r1(student)))
            print(f"step {step}/{steps} loss {loss.item():.4f} test R@1 {curve[-1][1]:.3f} [{time.time()-t0:.0f}s]", flush=True)
final = r1(student)
print("final test R@1", final, "total", round(time.time() - t0), "s")
append({"n_extra": len(docs), "epochs": EPOCHS, "texts": int(len(ids)), "test_r1_start": start,
        "test_r1_final": final, "curve": curve})
