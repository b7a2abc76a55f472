"""The real vision networks: EasyOCR's recogniser and CRAFT detector (the [vision] extra), their rendered data and
tasks, and the MobileNetV2-style animal-mnist teacher's architecture (its training is too slow for a test)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from adaptc.errors import TaskError
from adaptc.tasks import Split, Task, get_task, list_tasks, predict_torch

pytest.importorskip("easyocr_en_models", reason="the [vision] extra carries EasyOCR's weights")

from adaptc.tasks import easyocr_nets as E  # noqa: E402
from adaptc.tasks import text_render as R  # noqa: E402
from adaptc.tasks.ocr import decode_labels, detect_boxes, encode_labels  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def recognizer() -> E.Recognizer:
    return E.load_recognizer()


@pytest.fixture(scope="module")
def craft() -> E.CRAFT:
    return E.load_craft()


def test_state_dicts_load_strictly(recognizer: E.Recognizer, craft: E.CRAFT) -> None:
    # (load_* load with strict=True: a missing or unexpected key raises)
    assert sum(p.numel() for p in recognizer.parameters()) == 3_781_345
    assert sum(p.numel() for p in craft.parameters()) == 20_770_466
    assert len(E.CHARACTERS) == 96 and E.NUM_CLASSES == recognizer.Prediction.out_features == 97
    assert recognizer(torch.zeros(2, 1, 64, 128)).shape == (2, 31, 97)
    assert craft(torch.zeros(1, 3, 64, 96)).shape == (1, 2, 32, 48)


def test_craft_matches_easyocrs_in_place_relu_layout(craft: E.CRAFT) -> None:
    """easyocr slices torchvision's vgg16_bn features at 12 / 19 / 29 / 39 with in-place ReLUs opening slices 2-4
    (they rectify the skip connections too); the hand-written slices move those ReLUs one slice up."""
    layers = {int(n): m for s in list(craft.basenet.children())[:4] for n, m in s.named_children()}
    ref = [
        nn.Sequential(*[nn.ReLU(inplace=True) if isinstance(layers[k], nn.ReLU) else layers[k] for k in r])
        for r in (range(0, 12), range(12, 19), range(19, 29), range(29, 39))
    ]
    x = torch.randn(1, 3, 64, 64) * 60
    with torch.no_grad():
        h, skips = x, []
        for s in ref:
            h = s(h)
            skips.append(h)  # modified in place by the next slice's first ReLU, as in easyocr
        fc7 = craft.basenet.slice5(h)
        mine = craft.basenet(x)
    for a, b in zip(mine, (fc7, *reversed(skips))):
        torch.testing.assert_close(a, b)


def test_ctc_greedy_decoding_and_label_encoding() -> None:
    idx = {c: i + 1 for i, c in enumerate(E.CHARACTERS)}
    steps = [0, idx["h"], idx["h"], 0, idx["i"], 0, 0, idx["i"], idx["!"]]
    scores = np.eye(97)[steps][None]
    assert E.ctc_greedy_decode(scores) == ["hii!"]
    t = encode_labels(["don't", "x-1", "Zip64"])
    assert t.shape == (3, 12) and decode_labels(t) == ["don't", "x-1", "Zip64"]


def test_recognizer_reads_rendered_words(recognizer: E.Recognizer) -> None:
    words = R.render_words(40, width=192, seed=5, camera_share=0.3)
    assert words.images.shape == (40, 1, 64, 192) and words.images.min() >= -1 and words.images.max() <= 1
    again = R.render_words(40, width=192, seed=5, camera_share=0.3)
    assert np.array_equal(words.images, again.images) and words.labels == again.labels
    with torch.no_grad():
        read = E.ctc_greedy_decode(recognizer(torch.from_numpy(words.images)).numpy())
    assert np.mean([a == b for a, b in zip(read, words.labels)]) >= 0.8


def test_craft_region_score_is_high_on_words_and_low_elsewhere(craft: E.CRAFT) -> None:
    scenes = R.render_scenes(3, size=128, seed=7)
    with torch.no_grad():
        region = craft(torch.from_numpy(scenes.images))[:, 0].numpy()
    inside = scenes.box_masks() > 0
    for i, boxes in enumerate(scenes.boxes):
        assert boxes
        peaks = [region[i, y0 // 2 : y1 // 2 + 1, x0 // 2 : x1 // 2 + 1].max() for x0, y0, x1, y1 in boxes]
        assert min(peaks) > 0.5 and np.mean(peaks) > 0.8  # every word lights up (a short one on a photo less)
        # away from the words (a ring of 3 map pixels around each box left out) the score stays low
        near = np.zeros_like(inside[i])
        for x0, y0, x1, y1 in boxes:
            near[max(0, y0 // 2 - 3) : y1 // 2 + 4, max(0, x0 // 2 - 3) : x1 // 2 + 4] = True
        assert region[i][~near].max() < 0.5
        assert region[i][inside[i]].mean() > 5 * region[i][~near].mean()


def test_text_recognizer_task(recognizer: E.Recognizer) -> None:
    task = get_task("text-recognizer", samples=50, width=128)
    assert (len(task.train), len(task.val), len(task.test)) == (30, 10, 10)
    assert task.kind == "sequence" and task.example_inputs[0].shape == (1, 1, 64, 128)
    assert task.test.targets is not None and task.test.targets.shape == (10, 12)
    out = predict_torch(task.model, task.test)
    assert out.shape == (10, 31, 97)
    acc = task.metric(out, task.test)
    scores = task.per_sample(out, task.test)
    assert acc >= 0.7 and scores is not None and set(scores.tolist()) <= {0.0, 1.0}
    # the label term is CTC: small for the teacher's own scores, large for uniform scores
    ctc = float(task.train_loss(torch.from_numpy(out), task.test.targets))
    assert ctc < 1.0 < float(task.train_loss(torch.zeros(10, 31, 97), task.test.targets))
    # a larger task keeps the smaller one's samples (each split from its own seeded stream)
    bigger = get_task("text-recognizer", samples=60, width=128)
    assert torch.equal(bigger.test.inputs[0][:10], task.test.inputs[0])


def test_text_detector_task() -> None:
    task = get_task("text-detector", samples=20, size=128)
    assert (len(task.train), len(task.val), len(task.test)) == (12, 4, 4)
    assert task.kind == "embedding" and task.example_inputs[0].shape == (1, 3, 128, 128)
    assert task.test.targets is not None and task.test.targets.shape == (4, R.MAX_WORDS, 4)
    out = predict_torch(task.model, task.test, batch_size=4)
    assert out.shape == (4, 2, 64, 64)
    f1 = task.metric(out, task.test)
    assert f1 >= 0.6 and task.per_sample(out, task.test) is not None
    assert task.metric(np.zeros_like(out), task.test) == 0.0  # nothing found, nothing right
    assert float(task.train_loss(torch.from_numpy(out), task.test.targets)) < 0.2
    assert task.search_defaults.loss_weights == {"ce": 0.0}


def test_detect_boxes_on_a_drawn_map() -> None:
    region, affinity = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32)
    region[10:14, 4:8] = region[10:14, 10:14] = 0.9  # two characters linked by affinity: one word
    affinity[11:13, 7:11] = 0.8
    region[24:26, 24:26] = 0.9  # 4 pixels: too small
    boxes = detect_boxes(region, affinity)
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert x0 <= 8 and y0 <= 20 and x1 >= 28 and y1 >= 28 and x1 - x0 < 40


def test_embedding_tasks_with_box_targets_get_plain_batches() -> None:
    from adaptc.distill.batches import _n_batches, _train_batches

    x = torch.randn(10, 3, 8, 8)
    boxes = torch.full((10, 4, 4), -1, dtype=torch.int64)
    boxes[:, 0] = torch.tensor([1, 1, 5, 5])
    task = Task(
        name="t",
        model=nn.Conv2d(3, 2, 1),
        example_inputs=(x[:1],),
        train=Split((x,), boxes),
        val=Split((x,), boxes),
        test=Split((x,), boxes),
        kind="embedding",
    )
    got = [idx for idx, _, _ in _train_batches(task, 4, torch.Generator().manual_seed(0))]
    assert len(got) == _n_batches(task, 4) == 3 and sorted(torch.cat(got).tolist()) == list(range(10))


def test_ocr_tasks_say_how_to_install_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "easyocr_en_models" else find_spec(name, *a)
    )
    for name in ("text-recognizer", "text-detector"):
        with pytest.raises(TaskError, match=r'pip install -c constraints.txt "\.\[vision\]"'):
            get_task(name)


def test_recognizer_exports_to_onnx(tmp_path, recognizer: E.Recognizer) -> None:
    ort = pytest.importorskip("onnxruntime")
    from adaptc.exporters.onnx import export_onnx_fp32

    x = torch.from_numpy(R.render_words(3, width=128, seed=9).images)
    path = export_onnx_fp32(recognizer, (x[:1],), tmp_path / "rec.onnx", ("image",), ("scores",))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = recognizer(x).numpy()
    assert got.shape == want.shape == (3, 31, 97)
    assert np.abs(got - want).max() < 1e-3


def test_animal_mobilenet_architecture_and_listing() -> None:
    from adaptc.tasks.animal_mobilenet import InvertedResidual, MobileNetV2

    m = MobileNetV2().eval()
    assert isinstance(m.features, nn.Sequential) and isinstance(m.classifier[-1], nn.Linear)
    assert 500_000 <= sum(p.numel() for p in m.parameters()) <= 1_000_000
    blocks = [b for b in m.features if isinstance(b, InvertedResidual)]
    assert len(blocks) == 11 and sum(b.use_res_connect for b in blocks) == 6
    dw = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.groups > 1]
    assert len(dw) == 11 and all(c.groups == c.in_channels == c.out_channels for c in dw)
    assert any(isinstance(a, nn.ReLU6) for a in m.modules())
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    infos = {i.name: i for i in list_tasks()}
    assert infos["animal-mobilenet"].options == {"epochs": 15, "teacher_seed": 0}
    assert infos["text-recognizer"].options == {"samples": 600, "width": 256, "camera_share": 0.3, "seed": 0}
    assert infos["text-detector"].options == {"samples": 120, "size": 128, "seed": 0}
    assert infos["text-recognizer"].summary.startswith("EasyOCR's english_g2 recogniser (pretrained)")
    assert infos["text-detector"].summary.startswith("EasyOCR's CRAFT text detector (pretrained)")
    assert infos["animal-mobilenet"].summary.startswith(
        "animal-mnist (10 classes of 28x28 silhouettes) with a MobileNetV2"
    )


def test_recognizer_export_every_onnx_scheme_leaves_the_working_directory_clean(tmp_path) -> None:
    """The pretrained BiLSTM recogniser through `adaptc export` (every ONNX scheme): static int8 stores the LSTM
    weights in int8 too (DynamicQuantizeLSTM); a file the runtime crashes on (onnxruntime 1.32's optimizer on this
    float16 graph, on some x86 hosts) fails that artifact, not the build; onnxruntime's incomplete shape
    inference leaves nothing in the user's folder."""
    import json

    from .conftest import run_cli

    work = tmp_path / "cwd"
    work.mkdir()
    r = run_cli(
        "export", "--task", "text-recognizer", "-O", "samples=60", "-O", "width=128", "--device", "pixel8",
        "--formats", "onnx", "--prefer", "fastest", "--out", str(tmp_path / "out"), "--runs", "5",
        "--quant-effort", "fast", cwd=work,
    )  # fmt: skip
    assert r.returncode in (0, 2), r.stderr[-2000:]  # 2: over pixel8's budgets, the report is written anyway
    assert list(work.iterdir()) == []
    arts = {a["file"]: a for a in json.loads((tmp_path / "out" / "report.json").read_text())["artifacts"]}
    int8, fp32, fp16 = arts["model.int8.onnx"], arts["model.onnx"], arts["model.fp16.onnx"]
    assert "DynamicQuantizeLSTM" in int8["structure"]["op_counts"] and "lstm" in int8["recipe"]
    assert int8["size"]["value"] < fp32["size"]["value"] / 3.5
    assert fp16["status"] != "failed" or "crashed while opening the file" in fp16["error"]
