"""Device profiles: shipped ones validate and cite sources; malformed ones give one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adaptc.errors import ProfileError, UnknownDeviceError
from adaptc.profiles import DeviceProfile, list_devices, load_profile, load_profile_file, shipped_profile_dir

from .conftest import run_cli

GOOD = yaml.safe_load((shipped_profile_dir() / "pixel8.yaml").read_text())


def test_shipped_profiles_cover_kinds_and_cite_sources() -> None:
    profs = list_devices()
    names = {p.name for p in profs}
    assert len(profs) >= 7
    assert {"pixel8", "iphone15pro", "galaxy-s24", "echo-dot", "host"} <= names
    assert {"phone", "speaker", "camera", "host"} <= {p.kind.value for p in profs}
    assert any(p.name == "lowend-a53" and "A53" in p.cpu.cores[0].name for p in profs)
    assert any(p.kind.value == "camera" for p in profs)
    for p in profs:
        assert p.sources, p.name
        assert all(len(s) > 10 for s in p.sources)
        assert p.budgets.max_latency_ms and p.budgets.max_model_mb


def test_profile_is_frozen_and_rejects_mutation() -> None:
    p = load_profile("pixel8")
    with pytest.raises(Exception):
        p.name = "other"  # type: ignore[misc]


def test_wildcard_and_lookup() -> None:
    assert [p.name for p in list_devices("pixel*")] == ["pixel4", "pixel8"]
    assert {p.name for p in list_devices("*cam")} >= {"pi-zero-2w-cam"}
    with pytest.raises(UnknownDeviceError, match="did you mean 'pixel8'"):
        load_profile("pixle8")


def test_device_by_path(tmp_path: Path) -> None:
    d = dict(GOOD, name="my-phone")
    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump(d))
    assert load_profile(str(f)).name == "my-phone"
    assert isinstance(load_profile(f), DeviceProfile)


def _with(path: str, value: object) -> dict:
    d = yaml.safe_load(yaml.safe_dump(GOOD))
    cur = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[k]
    if value is _DELETE:
        del cur[keys[-1]]
    else:
        cur[keys[-1]] = value
    return d


_DELETE = object()

# (description, file content, words the one-line message must contain)
MALFORMED = [
    ("missing field", yaml.safe_dump(_with("soc", _DELETE)), ["soc", "required field is missing"]),
    ("missing nested field", yaml.safe_dump(_with("compute.fp32_gflops", _DELETE)), ["compute.fp32_gflops", "missing"]),
    ("wrong type", yaml.safe_dump(_with("budgets.max_latency_ms", "fast")), ["budgets.max_latency_ms", "fast"]),
    ("negative budget", yaml.safe_dump(_with("budgets.max_model_mb", -5)), ["budgets.max_model_mb", "greater than 0"]),
    ("zero throughput", yaml.safe_dump(_with("compute.int8_gops", 0)), ["compute.int8_gops"]),
    ("unknown key", yaml.safe_dump(_with("budgets.max_power_w", 3)), ["budgets.max_power_w", "unknown key"]),
    ("unknown top-level key", yaml.safe_dump(_with("npu_tops", 35)), ["npu_tops", "unknown key"]),
    ("empty file", "", ["empty"]),
    ("not YAML", "name: [unclosed\n  kind: phone\n", ["not valid YAML", "line"]),
    ("not a mapping", "- just\n- a list\n", ["mapping"]),
    ("unknown kind", yaml.safe_dump(_with("kind", "toaster")), ["kind", "toaster"]),
    ("unknown quantization scheme", yaml.safe_dump(_with("quantization", ["int8_static_per_channel", "int3"])),
     ["quantization[1]", "int3"]),
    ("unknown format", yaml.safe_dump(_with("formats", ["tflite", "tensorrt"])), ["formats[1]", "tensorrt"]),
    ("bad schema version", yaml.safe_dump(_with("schema_version", 7)), ["schema_version", "7"]),
    ("wrong type in list", yaml.safe_dump(_with("cpu.cores", [{"name": "X3", "count": "many", "ghz": 2.9}])),
     ["cpu.cores[0].count"]),
    ("threads beyond cores", yaml.safe_dump(_with("cpu.threads", 64)), ["cpu", "threads"]),
    ("budget beyond RAM", yaml.safe_dump(_with("budgets.max_peak_memory_mb", 10**6)), ["max_peak_memory_mb", "ram_mb"]),
    ("no sources", yaml.safe_dump(_with("sources", [])), ["sources"]),
    ("bad name", yaml.safe_dump(_with("name", "Pixel 8!")), ["name"]),
    ("duplicate format", yaml.safe_dump(_with("formats", ["onnx", "onnx"])), ["formats", "more than once"]),
    # limits checked before anything is built (a traceback or a hang otherwise), and keys given twice
    ("duplicate key", yaml.safe_dump(_with("kind", "phone")) + "kind: camera\n", ["duplicate key 'kind'", "line"]),
    ("nesting bomb", "name: " + "[" * 50_000 + "]" * 50_000 + "\n", ["nested more than 32 levels"]),
    ("alias bomb", "a: &a [1, 1]\n" + "".join(f"{c}: &{c} [*{p}, *{p}]\n" for p, c in zip("abcdefghijklmnopqrstuvwxy",
     "bcdefghijklmnopqrstuvwxyz")) + "name: [*z, *z, *z, *z, *z, *z, *z, *z, *z, *z, *z, *z, *z, *z, *z]\n",
     ["more than 64 aliases"]),
    # figures a physical device can have: finite, throughput and bandwidth in [0.001, 10^6], small integers
    ("infinite budget", yaml.safe_dump(_with("budgets.max_latency_ms", float("inf"))), ["budgets.max_latency_ms"]),
    ("NaN throughput", yaml.safe_dump(_with("compute.fp32_gflops", float("nan"))), ["compute.fp32_gflops"]),
    ("impossible throughput", yaml.safe_dump(_with("compute.int8_gops", 1e9)), ["compute.int8_gops", "1000000"]),
    ("impossible bandwidth", yaml.safe_dump(_with("memory.bandwidth_gbps", 1e-6)), ["memory.bandwidth_gbps", "0.001"]),
    ("channel multiple too large", yaml.safe_dump(_with("channel_multiple", 512)), ["channel_multiple", "256"]),
    ("size bomb", "sources: [" + ", ".join(["x" * 100] * 20_000) + "]\n", ["bytes, more than the 1,048,576 allowed"]),
]


@pytest.mark.parametrize("desc,content,words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_profile_messages(tmp_path: Path, desc: str, content: str, words: list[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(ProfileError) as ei:
        load_profile_file(f)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(f) in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_and_unreadable_profile_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(str(tmp_path / "nope.yaml"))
    with pytest.raises(ProfileError, match="directory"):
        load_profile_file(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProfileError):
        load_profile_file(binary)


@pytest.mark.parametrize("desc,content,words", MALFORMED[:10], ids=[m[0] for m in MALFORMED[:10]])
def test_cli_malformed_profile_exit_2_one_line(tmp_path: Path, desc: str, content: str, words: list[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    r = run_cli("devices", "show", str(f))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("adaptc: error:"), r.stderr


def test_cli_build_with_malformed_profile_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(_with("budgets.max_latency_ms", -1)))
    r = run_cli("build", "--device", str(f), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "budgets.max_latency_ms" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_cli_unknown_device_suggests() -> None:
    r = run_cli("build", "--device", "pixle8")
    assert r.returncode == 2
    assert "unknown device 'pixle8'" in r.stderr and "did you mean 'pixel8'" in r.stderr
    assert "galaxy-s24" in r.stderr  # lists the known ones
    assert "Traceback" not in r.stderr


def test_cli_devices_table_and_show() -> None:
    r = run_cli("devices")
    assert r.returncode == 0, r.stderr
    for name in ("pixel8", "iphone15pro", "echo-dot", "host"):
        assert name in r.stdout
    r = run_cli("devices", "pixel*")
    assert r.returncode == 0 and "pixel8" in r.stdout and "echo-dot" not in r.stdout
    r = run_cli("devices", "show", "echo-dot")
    assert r.returncode == 0 and "MT8516" in r.stdout and "sources:" in r.stdout
    r = run_cli("devices", "nothing*")
    assert r.returncode == 2 and "no device matches" in r.stderr


def test_user_profile_dir_overrides_and_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "pixel8.yaml").write_text(yaml.safe_dump(dict(GOOD, display_name="Overridden")))
    (d / "mine.yaml").write_text(yaml.safe_dump(dict(GOOD, name="mine")))
    monkeypatch.setenv("ADAPTC_PROFILE_PATH", str(d))
    assert load_profile("pixel8").display_name == "Overridden"
    assert load_profile("mine").name == "mine"
    (d / "wrongname.yaml").write_text(yaml.safe_dump(dict(GOOD, name="other")))
    with pytest.raises(ProfileError, match="does not match the file name"):
        load_profile("wrongname")
