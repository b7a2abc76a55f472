"""Built-in architectures and the docstrings corpus (no teacher training here: that is exercised by benchmarks)."""

from __future__ import annotations

from pathlib import Path

import torch

from adaptc.exporters.onnx import export_onnx_fp32
from adaptc.measure import open_runner
from adaptc.tasks.docstrings import MAX_LEN, load_splits
from adaptc.tasks.stdlib_corpus import load_docstrings
from adaptc.tasks.zoo import TinyResNet, TransformerClassifier


def test_stdlib_corpus_and_docstring_splits() -> None:
    docs = load_docstrings()
    assert len(docs) > 5000
    assert any(d.module == "json" and d.name == "<module>" for d in docs)
    tr, va, te, classes = load_splits()
    assert len(classes) == 8 and "asyncio" in classes
    # sizes depend on the Python build's stdlib (Debian's python3.11 ships no distutils / tkinter sources:
    # 1,270 train docs there, 1,665 with a full CPython 3.11.7)
    assert len(tr) > 1000 and len(va) > 300 and len(te) > 300
    assert tr.inputs[0].shape[1] == MAX_LEN and tr.inputs[0].dtype == torch.int64
    again = load_splits()
    assert torch.equal(again[2].inputs[0], te.inputs[0])


def test_transformer_padding_is_masked_and_exports(tmp_path: Path) -> None:
    m = TransformerClassifier(vocab=50, num_classes=3, dim=32, depth=2, num_heads=4, ffn=64, max_len=16).eval()
    ids = torch.randint(2, 50, (2, 16))
    ids[:, 10:] = 0
    # what follows the padding does not change the output
    ids2 = ids.clone()
    ids2[:, 12] = 0
    assert torch.allclose(m(ids), m(ids2), atol=1e-5)
    probs: list[torch.Tensor] = []
    m.blocks[0].attn.probs.register_forward_hook(lambda mod, i, o: probs.append(o))
    m(ids)
    assert probs[0].shape == (2, 4, 16, 16) and torch.allclose(probs[0].sum(-1), torch.ones(2, 4, 16))
    p = export_onnx_fp32(m, (ids[:1],), tmp_path / "t.onnx", ("ids",), ("logits",))
    out = open_runner("onnxruntime", p, 1).run([ids.numpy()])[0]
    assert abs(out - m(ids).detach().numpy()).max() < 1e-4


def test_tiny_resnet_shapes(tmp_path: Path) -> None:
    m = TinyResNet(in_channels=1, num_classes=10, widths=(16, 32), blocks_per_stage=2).eval()
    x = torch.randn(3, 1, 28, 28)
    assert m(x).shape == (3, 10)
    assert [b.removable for b in m.blocks] == [True, True, False, True]
    p = export_onnx_fp32(m, (x[:1],), tmp_path / "r.onnx", ("image",), ("logits",))
    out = open_runner("onnxruntime", p, 1).run([x.numpy()])[0]
    assert abs(out - m(x).detach().numpy()).max() < 1e-4


def test_minilm_pair_of_a_docstring() -> None:
    from adaptc.tasks.minilm import is_pair, summary_and_body

    s, b = summary_and_body("  Return the   sum of two.\n\n  Both arguments are numbers;\n  the result is their exact sum.\n")
    assert (s, b) == ("Return the sum of two.", "Both arguments are numbers; the result is their exact sum.")
    assert is_pair(s, b)
    assert summary_and_body("One paragraph only.") == ("One paragraph only.", "")
    assert not is_pair("Too short", b) and not is_pair(s, "a body of seven words only here")


def test_package_docstrings_of_installed_packages() -> None:
    from adaptc.tasks.stdlib_corpus import package_docstrings

    from adaptc.core.cache import cache_dir

    docs = package_docstrings(("yaml", "no_such_package_here"))
    assert docs and all(d.text for d in docs)  # PyYAML is a dependency; a missing package gives nothing
    assert package_docstrings(("no_such_package_here",)) == []
    # parsed once per installed version: the second read comes from the cache and is the same
    assert list(cache_dir().glob("package-docstrings-yaml-*.json"))
    assert package_docstrings(("yaml",)) == docs


def test_minilm_unlabelled_text_is_fixed_and_keeps_out_the_check_packages() -> None:
    """The minilm task's third-party distillation text: the same draw every time, distinct texts of 4 words or
    more, and none from the packages the benchmark's out-of-domain check is drawn from."""
    from adaptc.tasks.minilm import OUT_OF_DOMAIN_PACKAGES, UNLABELLED_PACKAGES, unlabelled_texts
    from adaptc.tasks.stdlib_corpus import package_docstrings

    assert not set(UNLABELLED_PACKAGES) & set(OUT_OF_DOMAIN_PACKAGES)
    texts = unlabelled_texts(300)
    assert len(texts) == 300 and len(set(texts)) == 300 and all(len(t.split()) >= 4 for t in texts)
    assert unlabelled_texts(300) == texts and unlabelled_texts(100) == texts[:100]
    check = {" ".join(d.text.split()) for d in package_docstrings(("networkx",))}
    assert check and not check & set(unlabelled_texts(2000))
