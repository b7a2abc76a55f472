"""Depth reduction on common model layouts: torchvision-style ``features`` of inverted residuals, ResNet
``layer1``..``layer4``, timm ``blocks.i.j`` and ``stages.i.blocks.j``, and containers a model names itself
(``adaptc_blocks``) or the caller names (``block_paths``). Small faithful replicas (no torchvision / timm)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adaptc.errors import AdaptcError
from adaptc.slim import block_importance, drop_blocks, extract_skeleton, find_blocks, max_droppable


def conv_bn(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: ``use_res_connect`` where stride is 1 and the channels match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn(c_in, hidden)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, c_out, act=False)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetLike(nn.Module):
    """``features``: stem, 6 inverted residuals (4 with the residual add), last 1x1 conv; then a classifier."""

    SPEC = ((16, 16, 1, 1), (16, 24, 2, 4), (24, 24, 1, 4), (24, 24, 1, 4), (24, 32, 2, 4), (32, 32, 1, 4))

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 16, 3, 2)]
        layers += [InvertedResidual(*s) for s in self.SPEC]
        layers.append(conv_bn(32, 64))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: ``downsample`` (None or a 1x1 conv + BN) and ``stride``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.stride = stride
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNetLike(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 3), widths: tuple[int, ...] = (16, 32, 64, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        c = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(c, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c = w
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class TimmInvertedResidual(InvertedResidual):
    """timm's block: the same, with ``has_skip`` (no ``use_res_connect``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__(c_in, c_out, stride, expand)
        self.has_skip = self.use_res_connect
        del self.use_res_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.has_skip else self.conv(x)


class TimmEfficientNetLike(nn.Module):
    """timm's EfficientNet layout: ``conv_stem``, ``blocks`` (a Sequential of stage Sequentials), ``conv_head``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = conv_bn(3, 16, 3, 2)
        stages = [[(16, 16, 1, 1)], [(16, 24, 2, 4), (24, 24, 1, 4), (24, 24, 1, 4)], [(24, 32, 2, 4), (32, 32, 1, 4)]]
        self.blocks = nn.Sequential(*(nn.Sequential(*(TimmInvertedResidual(*b) for b in s)) for s in stages))
        self.conv_head = conv_bn(32, 64)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv_head(self.blocks(self.conv_stem(x))).mean(dim=(2, 3)))


class ResBlock(nn.Module):
    """A residual block that says nothing about itself (no marker attribute)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Down(nn.Module):
    """A shape-changing block (no marker either)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class TimmStage(nn.Module):
    """timm's ConvNeXt-style stage: ``downsample`` then ``blocks``."""

    def __init__(self, c_in: int, c_out: int, depth: int):
        super().__init__()
        self.downsample = nn.Conv2d(c_in, c_out, 2, 2) if c_in != c_out else nn.Identity()
        self.blocks = nn.Sequential(*(ResBlock(c_out) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class TimmStagesLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, 4)
        self.stages = nn.Sequential(TimmStage(16, 16, 2), TimmStage(16, 32, 3))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.stage2 = nn.Sequential(Down(16, 32), ResBlock(32), ResBlock(32))
        self.stage3 = nn.ModuleList([Down(32, 48), ResBlock(48), ResBlock(48), ResBlock(48)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stem(x))
        for b in self.stage3:
            x = b(x)
        return x


class CustomNet(nn.Module):
    """An unknown layout: nothing found by convention; ``adaptc_blocks`` names its containers."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


class DeclaredNet(CustomNet):
    adaptc_blocks = ("backbone.stage2", "backbone.stage3")


def _x(n: int = 4, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(n, 3, size, size)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so every block changes the output (as a trained one does)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 1.5, generator=g)  # type: ignore[union-attr]
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return model.eval()


LAYOUTS = {
    # name: (model, expected block paths, expected droppable paths, max droppable)
    "mobilenet_features": (
        MobileNetLike,
        [f"features.{i}" for i in range(8)],
        ["features.1", "features.3", "features.4", "features.6"],
        4,
    ),
    "resnet_layers": (
        ResNetLike,
        ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1", "layer4.2"],
        ["layer1.0", "layer1.1", "layer2.1", "layer3.1", "layer4.1", "layer4.2"],
        1 + 1 + 1 + 2,  # layer1's two droppable blocks: one must stay
    ),
    "timm_blocks": (
        TimmEfficientNetLike,
        ["blocks.0.0", "blocks.1.0", "blocks.1.1", "blocks.1.2", "blocks.2.0", "blocks.2.1"],
        ["blocks.0.0", "blocks.1.1", "blocks.1.2", "blocks.2.1"],
        0 + 2 + 1,  # stage 0 has a single block
    ),
    "timm_stages": (
        TimmStagesLike,
        ["stages.0.blocks.0", "stages.0.blocks.1", "stages.1.blocks.0", "stages.1.blocks.1", "stages.1.blocks.2"],
        ["stages.0.blocks.0", "stages.0.blocks.1", "stages.1.blocks.0", "stages.1.blocks.1", "stages.1.blocks.2"],
        1 + 2,
    ),
    "declared": (
        DeclaredNet,
        ["backbone.stage2.0", "backbone.stage2.1", "backbone.stage2.2"] + [f"backbone.stage3.{i}" for i in range(4)],
        ["backbone.stage2.0", "backbone.stage2.1", "backbone.stage2.2"] + [f"backbone.stage3.{i}" for i in range(4)],
        2 + 3,  # the Down blocks say nothing: only their shapes tell (see test_shape_changing_blocks_never_scored)
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_blocks_found_and_droppable(name: str) -> None:
    make, paths, droppable, most = LAYOUTS[name]
    model = make().eval()
    refs = find_blocks(model)
    assert [r.path for r in refs] == paths
    assert [r.path for r in refs if r.droppable] == droppable
    assert all(r.module is model.get_submodule(r.path) for r in refs)
    assert max_droppable(model) == most


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_extract_skeleton_drops_k_blocks_and_runs(name: str) -> None:
    make, paths, _, most = LAYOUTS[name]
    torch.manual_seed(0)
    teacher, x = _randomize_bn(make()), _x()
    y = teacher(x)
    imp = block_importance(teacher, (x,))
    refs = find_blocks(teacher)
    # never a block that changes shapes, whatever it says
    assert all(r.module(h).shape == h.shape for r, h in _block_inputs(teacher, x, [refs[k] for k in imp]))
    assert max(imp.values()) > 0 and all(v > -1e-6 for v in imp.values())  # KL, up to rounding
    for k in range(1, len(imp) + 1):
        sk = extract_skeleton(teacher, (x[:1],), width=1.0, drop=k, importance=imp, channel_multiple=1)
        k_eff = min(k, most)
        assert len(sk.dropped_blocks) == k_eff and set(sk.dropped_blocks) <= set(imp)
        assert len(find_blocks(sk.model)) == len(paths) - k_eff
        assert sk.model(x).shape == y.shape
    for c in {id(r.container): r.container_path for r in refs}.values():  # one block at least in each container
        assert len(sk.model.get_submodule(c)) >= 1
    assert torch.equal(teacher(x), y)  # the teacher is untouched
    sk = extract_skeleton(teacher, (x[:1],), width=0.5, drop=2, calibration_inputs=(x,), channel_multiple=8)
    assert sk.model(x).shape == y.shape and len(find_blocks(sk.model)) == len(paths) - 2


def _block_inputs(model: nn.Module, x: torch.Tensor, refs: list) -> list:
    seen: dict[int, torch.Tensor] = {}
    hs = [r.module.register_forward_pre_hook(lambda m, a, i=i: seen.setdefault(i, a[0])) for i, r in enumerate(refs)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return [(r, seen[i]) for i, r in enumerate(refs)]


@pytest.mark.parametrize(
    ("name", "path", "branch_end"),
    [
        ("mobilenet_features", "features.4", "conv.2.1"),  # the projection's BN
        ("resnet_layers", "layer2.1", "bn2"),
        ("timm_blocks", "blocks.1.2", "conv.2.1"),
    ],
)
def test_block_with_zeroed_residual_branch_is_least_important(name: str, path: str, branch_end: str) -> None:
    make = LAYOUTS[name][0]
    torch.manual_seed(0)
    teacher, x = _randomize_bn(make()), _x()
    bn = teacher.get_submodule(f"{path}.{branch_end}")
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)
    imp = block_importance(teacher, (x,))
    k = [r.path for r in find_blocks(teacher)].index(path)
    assert imp[k] < 1e-6 and min(imp, key=lambda i: imp[i]) == k
    assert sorted(imp.values())[1] > 10 * imp[k]
    student, dropped = drop_blocks(teacher, 1, imp)
    assert dropped == [k] and len(find_blocks(student)) == len(find_blocks(teacher)) - 1
    torch.testing.assert_close(student(x), teacher(x), atol=1e-5, rtol=1e-4)  # the dropped block did nothing


def test_drop_blocks_removes_from_each_container_of_a_copy() -> None:
    teacher, x = _randomize_bn(ResNetLike()), _x()
    imp = {k: 1.0 for k in block_importance(teacher, (x,))}
    names = [r.path for r in find_blocks(teacher)]
    imp[names.index("layer1.0")] = imp[names.index("layer1.1")] = 0.0  # both least important: one must stay
    imp[names.index("layer4.2")] = 0.5
    student, dropped = drop_blocks(teacher, 2, imp)
    assert [names[k] for k in dropped] == ["layer1.0", "layer4.2"]
    assert [len(getattr(student, f"layer{i}")) for i in range(1, 5)] == [1, 2, 2, 2]
    assert [len(getattr(teacher, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 3]
    assert "layer1.0.conv1.weight" in student.state_dict() and "layer1.1.conv1.weight" not in student.state_dict()
    assert torch.equal(student.layer1[0].conv1.weight, teacher.layer1[1].conv1.weight)  # renumbered, same block
    assert student(x).shape == teacher(x).shape
    many, dropped = drop_blocks(teacher, 100, imp)  # never more than max_droppable
    assert len(dropped) == max_droppable(teacher) == 5
    assert [len(getattr(many, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert not any(names[k].endswith(".0") and names[k] != "layer1.0" for k in dropped)
    not_droppable = names.index("layer2.0")
    assert drop_blocks(teacher, 1, {not_droppable: 0.0})[1] == []  # a downsampling block is never dropped


def test_shape_changing_blocks_never_scored() -> None:
    """Blocks that say nothing in a named container: the ones changing shapes are found out on the inputs."""
    model, x = _randomize_bn(DeclaredNet()), _x()
    names = [r.path for r in find_blocks(model)]
    imp = block_importance(model, (x,))
    assert sorted(names[k] for k in imp) == sorted(set(names) - {"backbone.stage2.0", "backbone.stage3.0"})
    assert max_droppable(model, 0) == 7 and max_droppable(model, 0, example_inputs=(x,)) == 5
    sk = extract_skeleton(model, (x[:1],), width=1.0, drop=6, importance=imp, channel_multiple=1)
    assert sk.model(x).shape == model(x).shape and len(sk.dropped_blocks) == 5
    assert [type(b) for b in sk.model.backbone.stage2] == [type(b) for b in sk.model.backbone.stage3] == [Down]


def test_naming_containers() -> None:
    x = _x()
    assert find_blocks(CustomNet()) == [] and max_droppable(CustomNet()) == 0  # unknown layout: no depth reduction
    assert block_importance(CustomNet().eval(), (x,)) == {}
    named = [r.path for r in find_blocks(CustomNet(), ["backbone.stage3"])]
    assert named == [f"backbone.stage3.{i}" for i in range(4)]
    # paths given win over the model's adaptc_blocks
    assert [r.path for r in find_blocks(DeclaredNet(), ("backbone.stage2",))] == [
        f"backbone.stage2.{i}" for i in range(3)
    ]
    inst = CustomNet()
    inst.adaptc_blocks = "backbone.stage2"  # an instance attribute, one path as a string
    assert len(find_blocks(inst)) == 3

    class Wrapper(nn.Module):  # adaptc_blocks of a sub-module: relative to it
        def __init__(self) -> None:
            super().__init__()
            self.net = DeclaredNet()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    assert find_blocks(Wrapper())[0].path == "net.backbone.stage2.0"
    teacher = _randomize_bn(CustomNet())
    sk = extract_skeleton(
        teacher,
        (x[:1],),
        width=1.0,
        drop=2,
        calibration_inputs=(x,),
        channel_multiple=1,
        block_paths=("backbone.stage3",),
    )
    assert len(sk.model.backbone.stage3) == 2 and len(sk.model.backbone.stage2) == 3
    assert isinstance(sk.model.backbone.stage3, nn.ModuleList) and sk.model(x).shape == (4, 10)


def test_bad_paths_raise_adaptc_error() -> None:
    model = CustomNet()
    with pytest.raises(AdaptcError, match=r"'backbone\.stage9'.*no such module.*backbone\.stage2") as ei:
        find_blocks(model, ["backbone.stage9"])
    assert "\n" not in str(ei.value)
    with pytest.raises(AdaptcError, match=r"'backbone\.stem'.*Conv2d, not an nn\.Sequential / nn\.ModuleList"):
        max_droppable(model, paths=["backbone.stem"])
    with pytest.raises(AdaptcError, match=r"'stage2' \(CustomNet\.adaptc_blocks\).*backbone\.stage2"):
        model.adaptc_blocks = ("stage2",)
        block_importance(model, (_x(),))
    with pytest.raises(AdaptcError, match="'nope'"):
        extract_skeleton(CustomNet(), (_x(1),), width=1.0, block_paths=("nope",))
    with pytest.raises(AdaptcError, match="'head'"):
        drop_blocks(CustomNet(), 1, {0: 0.0}, paths=("head",))


def test_layouts_that_already_worked_and_plain_stacks() -> None:
    from adaptc.tasks.animal_mobilenet import MobileNetV2
    from adaptc.tasks.digits import DigitsCNN
    from adaptc.tasks.zoo import TinyResNet, TransformerClassifier

    t = TransformerClassifier(vocab=50, num_classes=3, dim=16, depth=3, num_heads=2, ffn=32, max_len=8)
    assert [r.path for r in find_blocks(t)] == ["blocks.0", "blocks.1", "blocks.2"] and max_droppable(t) == 2
    r = TinyResNet(widths=(16, 32), blocks_per_stage=2)
    assert [b.droppable for b in find_blocks(r)] == [True, True, False, True]
    assert find_blocks(DigitsCNN()) == []  # a plain conv stack named `features`: nothing to drop
    vgg = nn.Sequential()
    vgg.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
    assert find_blocks(vgg) == []
    mlp = nn.Module()
    mlp.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    assert [b.droppable for b in find_blocks(mlp)] == [False] * 3  # lone layers are not blocks to drop
    m = MobileNetV2()  # adaptc's animal-mobilenet teacher: its features' residual blocks are found now
    assert sum(b.droppable for b in find_blocks(m)) == 6


def test_taps_read_every_block_of_every_container() -> None:
    from adaptc.distill import Taps

    teacher, x = _randomize_bn(ResNetLike()), _x(2)
    student, _ = drop_blocks(teacher, 3, block_importance(teacher, (x,)))
    for model, n in ((teacher, 9), (student, 6)):
        with Taps(model, (x[:1],)) as taps:
            model(x)
            assert len(taps.captured.hidden) == n
    model = CustomNet().eval()
    with Taps(model, (x[:1],), block_paths=("backbone.stage3",)) as taps:
        model(x)
        assert [h.shape[1] for h in taps.captured.hidden] == [48] * 4
