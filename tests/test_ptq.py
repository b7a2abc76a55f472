"""Post-training quantization moves on the torch model (equalization, bias correction, per-layer sensitivity) and
the scheme walk's policy (build/ptq.py): real torch, small networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adaptc.build.ptq import drop_of, float_layer_table, walk
from adaptc.core.ptq import PTQConfig
from adaptc.core.quantity import Quantity
from adaptc.quant.equalize import equalize, fake_quantize_weight
from adaptc.quant.sensitivity import layer_macs, layer_sensitivity
from adaptc.report import ArtifactReport
from adaptc.report.schema import ParityReport
from adaptc.tasks.base import Split


class _Block(nn.Module):
    """An inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project), as MobileNetV2 has."""

    def __init__(self, c: int, act: type[nn.Module]) -> None:
        super().__init__()
        h = 4 * c
        self.conv = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False),
            nn.BatchNorm2d(h),
            act(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
            nn.BatchNorm2d(h),
            act(),
            nn.Conv2d(h, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _net(act: type[nn.Module] = nn.ReLU6, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act(), _Block(8, act), _Block(8, act)
    )
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    model = nn.Sequential(net, head).eval()
    for m in model.modules():  # BatchNorm statistics of a trained network: channel scales over decades
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.exp(torch.randn(n, generator=g)) * 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def _data(n: int = 64) -> Split:
    return Split((torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(1)),))


def test_equalization_keeps_the_function_and_equalizes_ranges() -> None:
    model, data = _net(nn.ReLU), _data()
    eq, info = equalize(model, data, bias_correction=False)
    assert info.folded_batchnorms == 7 and len(info.equalized_pairs) == 4 and info.relu6_replaced == 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in eq.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is not touched
    with torch.no_grad():
        a, b = model(data.inputs[0]), eq(data.inputs[0])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    # each equalized pair: output-channel ranges of the first = input-channel ranges of the second
    mods = dict(eq.named_modules())
    for first, second in info.equalized_pairs:
        w1, w2 = mods[first].weight.detach(), mods[second].weight.detach()
        r1 = w1.reshape(w1.shape[0], -1).amax(1) - w1.reshape(w1.shape[0], -1).amin(1)
        dw = mods[second].groups > 1
        w2c = w2 if dw else w2.transpose(0, 1)
        r2 = w2c.reshape(w2c.shape[0], -1).amax(1) - w2c.reshape(w2c.shape[0], -1).amin(1)
        assert torch.allclose(r1, r2, rtol=0.05), (first, second)


def test_relu6_between_equalized_layers_becomes_relu() -> None:
    eq, info = equalize(_net(nn.ReLU6), _data(), bias_correction=False)
    assert info.relu6_replaced == 4
    assert sum(isinstance(m, nn.ReLU6) for m in eq.modules()) == 1  # the stem's ReLU6 feeds a residual add


def test_bias_correction_removes_the_mean_shift_of_int8_weights() -> None:
    model, data = _net(nn.ReLU), _data()
    plain, _ = equalize(model, data, per_channel=False, bias_correction=False)
    corrected, info = equalize(model, data, per_channel=False, bias_correction=True)
    assert info.corrected_biases == 8

    def shift(m: nn.Module) -> float:
        q = _weights_int8(m, per_channel=False)
        with torch.no_grad():
            return float((q(data.inputs[0]) - model(data.inputs[0])).mean(0).abs().mean())

    assert shift(corrected) < 0.5 * shift(plain)


def _weights_int8(model: nn.Module, per_channel: bool) -> nn.Module:
    import copy

    q = copy.deepcopy(model)
    for m in q.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.weight.data = fake_quantize_weight(m.weight.data, per_channel)
    return q


def test_a_dead_channel_before_a_depthwise_layer_is_zeroed_and_its_bias_moves_on() -> None:
    """A ReLU that never fires in front of a depthwise conv whose BatchNorm variance fell to ~0 (what an ImageNet
    MobileNetV2 recipe leaves): folded, that filter is ~1/sqrt(eps) larger than the rest of the layer. Its input is
    always zero, so its weights are zeroed and its constant output moves into the projection's bias: the
    function is kept and the layer's ranges no longer span orders of magnitude."""
    model, data = _net(nn.ReLU), _data()
    block = model[0][3].conv
    with torch.no_grad():
        block[1].bias[5] = -100.0  # expand channel 5 never fires
        block[4].running_var[5], block[4].running_mean[5], block[4].bias[5] = 1e-30, 0.0, 0.7
    eq, info = equalize(model, data, per_channel=False, bias_correction=False)
    assert info.dead_channels == 1
    with torch.no_grad():
        a, b = model(data.inputs[0]), eq(data.inputs[0])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    dw = dict(eq.named_modules())["0.3.conv.3"]
    assert float(dw.weight.detach()[5].abs().max()) == 0.0 and float(dw.bias.detach()[5]) == 0.0
    data_free, _ = equalize(model, None, per_channel=False)  # no data: the dead channel cannot be told
    ranges = [dict(m.named_modules())["0.3.conv.3"].weight.detach().abs().flatten(1).amax(1) for m in (eq, data_free)]
    assert float(ranges[0].max() / ranges[0].median()) < 3 < float(ranges[1].max() / ranges[1].median())

    def err(m: nn.Module) -> float:
        with torch.no_grad():
            return float((_weights_int8(m, per_channel=False)(data.inputs[0]) - a).abs().mean())

    assert err(eq) < 0.2 * err(data_free)  # measured: 8e-4 against 1.2e-2


@pytest.mark.parametrize("bias", [0.7, -0.7])
def test_a_dead_filter_whose_constant_cannot_move_is_zeroed_only_when_the_relu_drops_it(bias: float) -> None:
    """After the depthwise conv comes a padded 3x3 conv: the constant (its bias) cannot move there exactly, so
    the filter is zeroed only when the ReLU between them zeroes that bias anyway (zero weights beside a kept
    bias would get a bias step of s_in * eps)."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1)
    ).eval()
    with torch.no_grad():
        m[0].bias[3] = -100.0  # channel 3 never fires
        m[2].weight[3] *= 500.0  # its depthwise filter: an outlier of the layer
        m[2].bias[3] = bias
    data = _data()
    eq, info = equalize(m, data, bias_correction=False)
    assert info.dead_channels == (1 if bias < 0 else 0)
    with torch.no_grad():
        a, b = m(data.inputs[0]), eq(data.inputs[0])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_an_activation_module_used_twice_says_nothing_of_dead_channels() -> None:
    class Shared(nn.Module):  # one ReLU at two places, as torchvision's ResNet blocks have
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c, self.relu = nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.relu(self.b(self.relu(self.a(x)))))

    m = Shared().eval()
    with torch.no_grad():
        m.a.bias[1] = -100.0  # dead after the first use of the ReLU only
    _, info = equalize(m, _data(), bias_correction=False)
    assert info.dead_channels == 0


def test_sensitivity_ranks_a_layer_with_an_outlier_weight_first() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 5),
    ).eval()  # fmt: skip
    data = _data()
    with torch.no_grad():
        model[0].weight[0].zero_()
        model[0].bias[0] = -1.0  # channel 0 of the first layer is always 0 after its ReLU
        # a large weight reading that dead channel: no effect in float, but one int8 scale per tensor then
        # rounds the rest of the layer's weights away
        model[2].weight[0, 0, 0, 0] = 500 * model[2].weight.abs().max()
    rows = layer_sensitivity(model, data, per_channel=False, classification=True)
    assert rows[0].name == "2" and rows[0].error > 10 * rows[1].error
    assert [r.error for r in rows] == sorted((r.error for r in rows), reverse=True)
    macs = layer_macs(model, data.inputs)
    assert macs["0"] == 10 * 10 * 8 * 9 and macs["7"] == 288 * 5
    assert {r.name for r in rows} == set(macs) == {"0", "2", "4", "7"}
    per_channel = layer_sensitivity(model, data, per_channel=True, classification=True)
    assert next(r for r in per_channel if r.name == "2").error < 0.2 * rows[0].error  # only its channel 0 suffers


def _rep(status: str, drop: float) -> ArtifactReport:
    q = Quantity.measured(0.9 - drop, "fraction", "test")
    parity = ParityReport(
        runtime="x", split="test", samples=10, metric_name="accuracy", metric=q, torch_metric=q,
        drop_vs_torch=drop, max_abs_diff=0.0, mean_abs_diff=0.0, cosine=1.0, max_drop=0.01, passed=status == "ok",
    )  # fmt: skip
    return ArtifactReport(file="m.int8.onnx", format="onnx", scheme="int8_static_per_tensor", precision="int8",
                          status=status, parity=parity)  # fmt: skip


@pytest.mark.parametrize("effort", ["fast", "default", "max"])
def test_walk_tries_moves_cheapest_first_and_stops_at_the_first_pass(effort: str) -> None:
    tried: list[PTQConfig] = []

    def make(cfg: PTQConfig) -> ArtifactReport:
        tried.append(cfg)
        return _rep("ok" if len(cfg.float_layers) >= 3 else "rejected", 0.2 - 0.01 * len(tried))

    layers = [f"l{i}" for i in range(40)]
    w = walk(make, effort=effort, calibrations=["percentile", "entropy"], ranked_layers=lambda eq: layers)  # type: ignore[arg-type]
    moves = [c.describe() for c in tried]
    if effort == "fast":
        assert moves == ["default"]
        return
    assert moves[:4] == ["default", "percentile", "entropy", "entropy + equalization"]
    assert [len(c.float_layers) for c in tried[4:]] == [1, 2, 4]  # fewest float layers first; 4 passes
    assert tried[-1].float_layers == ("l0", "l1", "l2", "l3") and tried[-1].equalize
    assert w.attempts[-1][1].status == "ok" and len(w.summary()) == 7


def test_walk_stops_at_a_rejection_that_is_not_the_parity_gate() -> None:
    tried: list[PTQConfig] = []

    def make(cfg: PTQConfig) -> ArtifactReport:
        tried.append(cfg)  # e.g. CoreML off macOS: a structure check rejects, no parity ran
        return ArtifactReport(file="m.int8.mlpackage", format="coreml", scheme="s", precision="int8", status="rejected")

    walk(make, effort="max", calibrations=["percentile"], ranked_layers=lambda eq: ["a", "b"])
    assert len(tried) == 1


def test_walk_stops_when_its_time_is_spent() -> None:
    t = [0.0]

    def make(cfg: PTQConfig) -> ArtifactReport:
        t[0] += 400.0
        return _rep("rejected", 0.1)

    w = walk(make, effort="default", calibrations=["percentile", "entropy"], ranked_layers=lambda eq: ["a"],
             clock=lambda: t[0])  # fmt: skip
    assert len(w.attempts) == 3 and w.stopped and "time budget" in w.stopped


def test_float_layer_table_and_drop() -> None:
    table = float_layer_table(["a"], {"a": 25, "b": 75}, {"a": 100}, {"a": "Conv2d"}, bytes_saved=3.0)
    assert table["macs_share"] == 0.25 and table["extra_bytes"] == 300.0
    assert drop_of(_rep("ok", 0.004)) == 0.004
    assert math.isinf(drop_of(ArtifactReport(file="f", format="onnx", scheme="s", precision="int8", status="failed")))
