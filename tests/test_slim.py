"""Skeleton extraction on the digits CNN, a residual depthwise CNN and a small transformer encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from adaptc.errors import AdaptcError
from adaptc.exporters.onnx import export_onnx_fp32
from adaptc.measure import open_runner
from adaptc.slim import PruningError, block_importance, count_params, drop_blocks, extract_skeleton, prune_width
from adaptc.tasks.digits import DigitsCNN
from adaptc.tasks.zoo import TinyResNet, TransformerClassifier

MODELS = {
    "digits_cnn": (lambda: DigitsCNN(), lambda: torch.randn(4, 1, 8, 8)),
    "resnet_dw": (lambda: TinyResNet(widths=(32, 64, 128), blocks_per_stage=2), lambda: torch.randn(4, 1, 28, 28)),
    "transformer": (lambda: TransformerClassifier(vocab=300, num_classes=5, dim=64, depth=4, num_heads=4, ffn=128,
                                                  max_len=16), lambda: torch.randint(1, 300, (4, 16))),
}


def _onnx_parity(model: nn.Module, x: torch.Tensor, tmp: Path) -> float:
    p = export_onnx_fp32(model.eval(), (x[:1],), tmp / "m.onnx", ("x",), ("y",))
    out = open_runner("onnxruntime", p, 1).run([x.numpy()])[0]
    return float(abs(out - model(x).detach().numpy()).max())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("width", [0.5, 0.25])
def test_width_pruning_shapes_runs_exports(name: str, width: float, tmp_path: Path) -> None:
    make, data = MODELS[name]
    torch.manual_seed(0)
    teacher, x = make().eval(), data()
    student = prune_width(teacher, (x[:1],), width, channel_multiple=8)
    assert count_params(student) < count_params(teacher) * (width + 0.15)
    assert student(x).shape == teacher(x).shape
    for m in student.modules():
        if isinstance(m, nn.Conv2d) and m.out_channels != 10:
            assert m.out_channels % 8 == 0 and m.out_channels <= round(m.out_channels / width) + 8
        if isinstance(m, nn.Linear) and m.out_features not in (10, 5):
            assert m.out_features % 8 == 0
    assert _onnx_parity(student, x, tmp_path) < 1e-4
    assert teacher(x).shape == (4, 10 if name != "transformer" else 5)  # the teacher is untouched


def test_transformer_heads_and_ffn_pruned() -> None:
    make, data = MODELS["transformer"]
    teacher, x = make().eval(), data()
    s = prune_width(teacher, (x[:1],), 0.5, channel_multiple=8)
    a0 = s.blocks[0].attn
    assert a0.num_heads == 2 and a0.q.out_features == 2 * 16  # whole heads removed, head dim kept
    assert s.blocks[0].ffn[0].out_features == 64 and s.tok.embedding_dim == 32
    probs = []
    s.blocks[0].attn.probs.register_forward_hook(lambda m, i, o: probs.append(o))
    s(x)
    assert probs[0].shape == (4, 2, 16, 16)


def test_depth_reduction_drops_least_important(tmp_path: Path) -> None:
    for name in ("resnet_dw", "transformer"):
        make, data = MODELS[name]
        torch.manual_seed(1)
        teacher, x = make().eval(), data()
        imp = block_importance(teacher, (x,))
        removable = [i for i, b in enumerate(teacher.blocks) if getattr(b, "removable", True)]
        assert sorted(imp) == removable and all(v >= 0 for v in imp.values())
        student, dropped = drop_blocks(teacher, 2, imp)
        assert dropped == sorted(sorted(imp, key=lambda i: imp[i])[:2])
        assert len(student.blocks) == len(teacher.blocks) - 2
        assert student(x).shape == teacher(x).shape
        sk = extract_skeleton(teacher, (x[:1],), width=0.5, drop=1, importance=imp)
        assert len(sk.model.blocks) == len(teacher.blocks) - 1 and sk.params < count_params(teacher)
        assert _onnx_parity(sk.model, x, tmp_path) < 1e-4


def test_digits_cnn_has_no_droppable_blocks() -> None:
    assert block_importance(DigitsCNN().eval(), (torch.randn(2, 1, 8, 8),)) == {}


def test_bad_width() -> None:
    with pytest.raises(AdaptcError, match=r"outside \(0, 1\]"):
        prune_width(DigitsCNN(), (torch.randn(1, 1, 8, 8),), 1.5)


class _RawParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w.T  # a parameter outside any standard layer


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 16)
        self.mixer = _RawParam()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mixer(self.a(x)))


def test_untraceable_teacher_names_the_module() -> None:
    with pytest.raises(PruningError) as ei:
        prune_width(Untraceable(), (torch.randn(1, 4),), 0.5, channel_multiple=1)
    assert "mixer (_RawParam)" in str(ei.value)


class _Embedder(nn.Module):
    """A tiny sentence-embedding model: transformer encoder, mean pooling, L2 normalisation (no class head)."""

    def __init__(self, vocab: int = 300) -> None:
        super().__init__()
        self.enc = TransformerClassifier(vocab=vocab, num_classes=48, dim=48, depth=2, num_heads=4, ffn=96, max_len=16)
        self.enc.head = nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.enc(ids), dim=-1)


def test_embedding_student_gets_projection_back_to_teacher_size(tmp_path: Path) -> None:
    from adaptc.slim import OutputProjection, extract_skeleton

    torch.manual_seed(0)
    teacher = _Embedder().eval()
    ids = torch.randint(1, 300, (64, 16))
    sk = extract_skeleton(teacher, (ids[:1],), width=0.5, keep_output_dim=False, calibration_inputs=(ids,))
    assert isinstance(sk.model, OutputProjection) and sk.model.proj.in_features == 24
    out = sk.model(ids)
    assert out.shape == (64, 48) and torch.allclose(out.norm(dim=-1), torch.ones(64), atol=1e-5)
    # the least-squares initialisation already points the student's embeddings towards the teacher's
    cos = (out * teacher(ids)).sum(-1).mean()
    assert cos > 0.3
    assert _onnx_parity(sk.model, ids, tmp_path) < 1e-4
