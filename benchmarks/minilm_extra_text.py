"""Experiments on the MiniLM student's retention: more text, embedding mimicry, other skeletons.

    python benchmarks/minilm_extra_text.py [N_EXTRA=0] [EPOCHS=4]      (LR=3e-4 START=build|skeleton)

Starts from the final student of the pixel8 build that ``benchmarks/minilm_bench.py`` made
(``adaptc-out/minilm-bench``), or with START=skeleton from a skeleton of the teacher (WIDTH=0.5 DROP=4: the pixel8
build's), and trains it with embedding mimicry only (MSE + cosine to the teacher's embedding, batch 32,
one-cycle lr; only the teacher's embeddings are kept) on the task's training texts (since 2026-11-29T14:00 these
include 10,000 third-party docstrings, ``adaptc.tasks.minilm.unlabelled_texts``; 15,000 since 18:10) plus N
further docstrings of installed third-party packages (read with ``ast``, never imported). After every epoch
it prints R@1 and the mean cosine to the teacher on the validation split, on the test split and on an
out-of-domain check that no build or experiment trains on (500 summary -> body pairs of scipy, sympy and
networkx docstrings), and the cosine on 400 training texts; appends the run to
``benchmarks/results/minilm_extra_text.json``. About 11 minutes for N=0 and 4 epochs on 2 cores (the teacher
embeds ~50 texts/s). Results: docs/benchmarks/minilm.md (``--table`` rewrites its table from the JSON).

    python benchmarks/minilm_extra_text.py --hybrid [N_EXTRA=5000] [EPOCHS=3]   (WIDTH=0.5 DROP=4)

adaptc's trainer with the task's settings (lr, batch, ...) but the full hybrid loss by default (W="ce=0,hidden=0,
attention=0,relation=0" is the build's recipe since 2026-11-29: the embedding term alone), teacher cache, from a
skeleton of the teacher (default the pixel8 build's: 2 of 6 layers, x0.5; WIDTH / DROP choose another), on the
task's training texts plus N further third-party docstrings (unlabelled: they join the cache and the
distillation terms, not the InfoNCE pairs); prints validation R@1 per epoch and test R@1 / R@10 and the
out-of-domain check at the end, and appends the run. VARIANTS="hidden=1;lr=1e-3" makes one run per variant
(';') in one process, sharing the teacher's pass: each sets loss weights (LossWeights fields) and DistillConfig
fields (lr, batch_size, ...) over W; EMB="lazy,dense" one run per way of training the embedding tables. (Runs
before 2026-11-29T14:20Z used lr 2e-4 and the stdlib texts alone: about 7 minutes for N=0 and 10 for N=5000,
3 epochs, 8.5 GB peak.) With the hybrid terms the cache grows with the square of the text length (third-party
docstrings are twice as long as the stdlib's): N=20000 would need 17 GB even for the two teacher layers the
student reads; the embedding term alone caches outputs only. The build's recipe on its 21,586 texts, 4 epochs: about
10 minutes per run, plus 5 for loading and the shared teacher's pass.
"""
import os, sys, time, json
if __name__ == "__main__" and "--table" in sys.argv[1:]:  # docs tables from results/ (tables.py), before torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(__import__("tables").main(["minilm_extra_text"]))

import torch, torch.nn.functional as F
from pathlib import Path
torch.set_num_threads(2)
from adaptc.tasks import get_task
from adaptc.tasks.minilm import N_UNLABELLED, UNLABELLED_PACKAGES, load_tokenizer, tokenize, unlabelled_texts
from adaptc.search.trials import TrialStore
from minilm_ood import PACKAGES as OOD_PACKAGES, out_of_domain_pairs  # the out-of-domain check
HYBRID = len(sys.argv) > 1 and sys.argv[1] == "--hybrid"
args = sys.argv[2:] if HYBRID else sys.argv[1:]
N_EXTRA = int(args[0]) if args else (5000 if HYBRID else 0)
EPOCHS = float(args[1]) if len(args) > 1 else (3 if HYBRID else 4)
#: further training text: the task's unlabelled packages (runs recorded before 2026-11-29T14:00Z drew from a list
#: of 16 packages of their own, and those before 12:00Z from scipy, sympy and networkx too, with no out-of-domain
#: check)
assert not set(UNLABELLED_PACKAGES) & set(OOD_PACKAGES)
RESULTS = Path(__file__).resolve().parent / "results" / "minilm_extra_text.json"
t0 = time.time()
task = get_task("minilm")
teacher = task.model.eval()
tok = load_tokenizer()


def third_party_docstrings(n: int) -> list[str]:
    """n docstrings beyond those the task's training split holds already."""
    return unlabelled_texts(N_UNLABELLED + n)[N_UNLABELLED:]


def append(run: dict) -> None:
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    runs.append({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **run,
                 "seconds": round(time.time() - t0)})
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")


if HYBRID:
    import copy
    import dataclasses
    import itertools

    from adaptc.distill.losses import LossWeights
    from adaptc.distill.trainer import DistillConfig, distill, predict_torch
    from adaptc.slim import block_importance, extract_skeleton
    from adaptc.tasks import Split
    from adaptc.tasks.minilm import SEARCH_DEFAULTS, retrieval_scores

    docs = third_party_docstrings(N_EXTRA)
    ids_x, mask_x = tokenize(tok, docs) if docs else (torch.zeros(0, 128, dtype=torch.long),) * 2
    tr = task.train
    train = Split((torch.cat([tr.inputs[0], ids_x]), torch.cat([tr.inputs[1], mask_x])),
                  torch.cat([tr.targets, torch.full((len(docs),), -1)]))  # -1: unlabelled
    imp = block_importance(teacher, task.val.subset(slice(0, 256)).inputs)  # as the search measures it
    WIDTH, DROP = float(os.environ.get("WIDTH", 0.5)), int(os.environ.get("DROP", 4))  # another skeleton
    sk = extract_skeleton(teacher, task.example_inputs, width=WIDTH, drop=DROP, channel_multiple=8, importance=imp)
    # W="kd=10,ce=0": other weights of the hybrid loss's terms (adaptc.distill.losses.LossWeights)
    W = {k: float(v) for k, v in (kv.split("=") for kv in os.environ.get("W", "").split(",") if kv)}
    # EMB="lazy,dense": one run per way of training the embedding tables (DistillConfig.embeddings; the teacher
    # cache is shared)
    # VARIANTS="hidden=1;lr=1e-3": one run per variant (';'), each overriding loss weights (LossWeights fields)
    # and DistillConfig fields (lr, batch_size, ...) of the runs above (the teacher cache is shared)
    variants = [dict(kv.split("=") for kv in v.split(",") if kv) for v in os.environ.get("VARIANTS", "").split(";")]
    emb_updates = [e for e in os.environ.get("EMB", "").split(",") if e] or [None]
    terms = LossWeights.__dataclass_fields__
    for variant, emb_update in itertools.product(variants, emb_updates):
        w = {**W, **{k: float(x) for k, x in variant.items() if k in terms}}
        # DistillConfig fields take the type of the task's setting (lr float, batch_size int, ...)
        opts = {**SEARCH_DEFAULTS["distill"], "threads": 2, "weights": LossWeights(**w),
                **{k: type(SEARCH_DEFAULTS["distill"].get(k, 0.0))(x) for k, x in variant.items() if k not in terms}}
        if emb_update is not None:
            opts["embeddings"] = emb_update
        res = distill(copy.deepcopy(sk.model), teacher,
                      dataclasses.replace(task, train=train), DistillConfig(epochs=int(EPOCHS), **opts),
                      on_epoch=lambda e, v: print(f"epoch {e} val R@1 {v:.4f} [{time.time() - t0:.0f}s]", flush=True))

        def scores(split) -> dict:  # noqa: ANN001
            return retrieval_scores(predict_torch(res.model, split, transform=task.batch_transform), len(split) // 2)

        te, va, ood = scores(task.test), scores(task.val), scores(out_of_domain_pairs())
        print("test R@1 / R@10", te[1], te[10], "val", va[1], va[10], "out-of-domain", ood[1], ood[10], flush=True)
        append({"mode": f"hybrid from the skeleton w{WIDTH}-d{DROP}", "weights": w or "default",
                **({"variant": variant} if variant else {}), "lr": opts["lr"], "n_extra": len(docs),
                "embeddings": opts.get("embeddings", "dense"), "epochs": EPOCHS, "texts": len(train),
                "val_curve": [h.get("val") for h in res.history], "val_r1": va[1], "val_r10": va[10],
                "test_r1": te[1], "test_r10": te[10], "ood_r1": ood[1], "ood_r10": ood[10],
                "train_seconds": round(sum(h.get("train_seconds", 0) for h in res.history))})
    sys.exit(0)

# mimicry: the build's student fine-tuned on the teacher's embeddings alone
from adaptc.tasks import Split, predict_torch  # noqa: E402
from adaptc.tasks.base import trim_padding  # noqa: E402
from adaptc.tasks.minilm import retrieval_scores  # noqa: E402

LR = float(os.environ.get("LR", 3e-4))
START = os.environ.get("START", "build")  # "build": the pixel8 build's student; "skeleton": WIDTH/DROP skeleton
if START == "skeleton":
    from adaptc.slim import block_importance, extract_skeleton

    WIDTH, DROP = float(os.environ.get("WIDTH", 0.5)), int(os.environ.get("DROP", 4))
    imp = block_importance(teacher, task.val.subset(slice(0, 256)).inputs)  # as the search measures it
    student = extract_skeleton(teacher, task.example_inputs, width=WIDTH, drop=DROP, channel_multiple=8,
                               importance=imp).model.train()
    START = f"skeleton w{WIDTH}-d{DROP}"
else:
    student = TrialStore.open_final(Path(__file__).resolve().parent.parent / "adaptc-out" / "minilm-bench").train()
    START = "the build's student"


def emb(model, ids, mask) -> torch.Tensor:  # noqa: ANN001
    return torch.from_numpy(predict_torch(model, Split((ids, mask)), transform=trim_padding))


checks = {"val": task.val, "ood": out_of_domain_pairs(), "test": task.test}
t_checks = {k: emb(teacher, *sp.inputs) for k, sp in checks.items()}
docs = third_party_docstrings(N_EXTRA) if N_EXTRA else []
ids, mask = task.train.inputs
if docs:
    ids_x, mask_x = tokenize(tok, docs)
    ids, mask = torch.cat([ids, ids_x]), torch.cat([mask, mask_x])
order = torch.argsort(mask.sum(1))  # length-sorted batches: little padding
ids, mask = ids[order], mask[order]
temb = emb(teacher, ids, mask)
probe = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))[:400]
print("teacher:", {k: round(retrieval_scores(e.numpy(), len(e) // 2)[1], 4) for k, e in t_checks.items()},
      f"embedded {len(ids)} training texts [{time.time() - t0:.0f}s]", flush=True)


def evaluate(tag: str) -> dict:
    row = {"train_cos": round(float((emb(student, ids[probe], mask[probe]) * temb[probe]).sum(1).mean()), 4)}
    for k, sp in checks.items():
        e = emb(student, *sp.inputs)
        row[f"{k}_r1"] = round(retrieval_scores(e.numpy(), len(e) // 2)[1], 4)
        row[f"{k}_cos"] = round(float((e * t_checks[k]).sum(1).mean()), 4)
    print(tag, row, f"[{time.time() - t0:.0f}s]", flush=True)
    return row


curve = [evaluate("start")]
opt = torch.optim.AdamW(student.parameters(), lr=LR, weight_decay=0.01)
bs = 32
batches = [torch.arange(i, min(i + bs, len(ids))) for i in range(0, len(ids), bs)]
steps = int(len(batches) * EPOCHS)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.05)
g = torch.Generator().manual_seed(0)
step = 0
while step < steps:
    for j in torch.randperm(len(batches), generator=g).tolist():
        if step >= steps:
            break
        b = batches[j]
        s, t = student(*trim_padding((ids[b], mask[b]))), temb[b]
        loss = F.mse_loss(s, t) * 384 + (1 - (s * t).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
    curve.append(evaluate(f"epoch {len(curve)}"))
append({"mode": f"mimicry from {START}", "n_extra": len(docs), "epochs": EPOCHS, "lr": LR,
        "batch_size": bs, "texts": int(len(ids)),
        "teacher": {k: retrieval_scores(e.numpy(), len(e) // 2)[1] for k, e in t_checks.items()}, "curve": curve})
