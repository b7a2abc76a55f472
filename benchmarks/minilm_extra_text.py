"""Experiment: does more unlabelled text (third-party docstrings) lift the MiniLM student's test R@1?

    python benchmarks/minilm_extra_text.py [N_EXTRA=20000] [EPOCHS=2]

Starts from the final student of the pixel8 build that ``benchmarks/minilm_bench.py`` made
(``adaptc-out/minilm-bench``), fine-tunes it with embedding distillation (MSE + cosine to the teacher's
embedding; no teacher-output cache: only the teacher's embeddings are kept) on the train texts plus N
docstrings of installed third-party packages (read with ``ast``, never imported), and prints test R@1 in torch
(fp32) every 300 steps; appends the run to ``benchmarks/results/minilm_extra_text.json``. About 20 minutes
for N=20000 on 2 cores (the teacher embeds ~50 texts/s). Results: README, MiniLM section.
"""
import os, sys, time, re, random, json
import numpy as np, torch, torch.nn.functional as F
from pathlib import Path
torch.set_num_threads(2)
from adaptc.tasks import get_task
from adaptc.tasks.minilm import load_tokenizer, tokenize, recall_at_1
from adaptc.tasks.stdlib_corpus import _scan
from adaptc.search.trials import TrialStore
N_EXTRA = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
EPOCHS = float(sys.argv[2]) if len(sys.argv) > 2 else 2
t0 = time.time()
task = get_task("minilm")
teacher = task.model.eval()
student = TrialStore.open_final(Path(__file__).resolve().parent.parent / "adaptc-out" / "minilm-bench").train()
tok = load_tokenizer()
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
site = [p for p in sys.path if p.endswith("site-packages")][0]
docs = []
for pkg in ("numpy", "scipy", "torch", "transformers", "onnx", "sympy", "pandas", "sklearn", "matplotlib",
            "networkx", "jinja2", "pydantic", "rich", "typer", "click", "tokenizers", "coremltools", "mpmath", "yaml"):
    d = os.path.join(site, pkg)
    if os.path.isdir(d):
        docs += [" ".join(x.text.split()) for x in _scan(d)]
print("extra docstrings found", len(docs), round(time.time() - t0), "s", flush=True)
random.Random(0).shuffle(docs)
docs = [d for d in docs if len(d.split()) >= 4][:N_EXTRA]
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
res = Path(__file__).resolve().parent / "results" / "minilm_extra_text.json"
runs = json.loads(res.read_text()) if res.exists() else []
runs.append({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "n_extra": len(docs), "epochs": EPOCHS,
             "texts": int(len(ids)), "test_r1_start": start, "test_r1_final": final, "curve": curve,
             "seconds": round(time.time() - t0)})
res.write_text(json.dumps(runs, indent=1) + "\n")
