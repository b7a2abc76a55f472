"""Finding and loading device profiles: by name, by path, or by wildcard.

Search order (first match of a name wins):
  1. directories in ``$ADAPTC_PROFILE_PATH`` (``os.pathsep``-separated),
  2. the user directory ``$XDG_CONFIG_HOME/adaptc/device_profiles`` (``adaptc calibrate`` writes ``host.yaml`` there),
  3. the profiles shipped inside the package (``adaptc.device_profiles``, from the repo's ``device_profiles/``).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..core.names import unknown_name_message
from ..core.safe_yaml import YamlLimitError, load_yaml
from ..errors import ProfileError, UnknownDeviceError
from .schema import SCHEMA_VERSION, DeviceProfile


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    path: Path
    origin: str  # "env", "user" or "shipped"


def user_profile_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "adaptc" / "device_profiles"


def shipped_profile_dir() -> Path:
    return Path(str(resources.files("adaptc.device_profiles")))


def _search_dirs() -> list[tuple[Path, str]]:
    dirs: list[tuple[Path, str]] = []
    for d in filter(None, os.environ.get("ADAPTC_PROFILE_PATH", "").split(os.pathsep)):
        dirs.append((Path(d), "env"))
    dirs.append((user_profile_dir(), "user"))
    dirs.append((shipped_profile_dir(), "shipped"))
    return dirs


def _entries() -> dict[str, ProfileEntry]:
    found: dict[str, ProfileEntry] = {}
    for d, origin in _search_dirs():
        if not d.is_dir():
            continue
        for p in sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))):
            found.setdefault(p.stem, ProfileEntry(p.stem, p, origin))
    return found


def known_device_names() -> list[str]:
    return sorted(_entries())


def _format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_validation_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = _format_loc(e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not in schema version 1)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "literal_error" and loc.startswith("quantization"):
            msg = f"unknown quantization scheme {e.get('input')!r}; {msg}"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        parts.append(f"{loc}: {msg}")
    return f"invalid device profile {source}: " + "; ".join(parts)


def parse_profile(data: Any, source: str = "<profile>") -> DeviceProfile:
    """Validate already-parsed YAML data; errors name ``source`` and the field path."""
    if data is None:
        raise ProfileError(f"invalid device profile {source}: the file is empty")
    if not isinstance(data, dict):
        raise ProfileError(
            f"invalid device profile {source}: the top level must be a mapping of fields, got {type(data).__name__}"
        )
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise ProfileError(
            f"invalid device profile {source}: schema_version: unsupported version {version!r} "
            f"(this adaptc reads version {SCHEMA_VERSION})"
        )
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(_format_validation_error(source, e)) from None


def load_profile_file(path: str | os.PathLike[str], *, expect_name: str | None = None) -> DeviceProfile:
    p = Path(path)
    src = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"device profile file {src} does not exist") from None
    except IsADirectoryError:
        raise ProfileError(f"device profile {src} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ProfileError(f"invalid device profile {src}: not a text (UTF-8) file") from None
    except OSError as e:
        raise ProfileError(f"device profile {src} cannot be read: {e.strerror or e}") from None
    try:
        data = load_yaml(text)
    except YamlLimitError as e:
        raise ProfileError(f"invalid device profile {src}: refused before parsing: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ProfileError(f"invalid device profile {src}: not valid YAML{where}: {problem}") from None
    prof = parse_profile(data, src)
    if expect_name is not None and prof.name != expect_name:
        raise ProfileError(
            f"invalid device profile {src}: name: {prof.name!r} does not match the file name {expect_name!r}"
        )
    return prof


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith((".yaml", ".yml")) or Path(spec).is_file()


def load_profile(device: str | os.PathLike[str] | DeviceProfile) -> DeviceProfile:
    """A profile from a name (``pixel8``), a path to a YAML file, or a profile object."""
    if isinstance(device, DeviceProfile):
        return device
    if isinstance(device, os.PathLike):
        return load_profile_file(device)
    if not isinstance(device, str) or not device.strip():
        raise UnknownDeviceError("no device given: pass a profile name (see `adaptc devices`) or a YAML path")
    spec = device.strip()
    if _looks_like_path(spec):
        return load_profile_file(spec)
    entries = _entries()
    entry = entries.get(spec)
    if entry is None:
        raise UnknownDeviceError(unknown_name_message("device", spec, entries))
    return load_profile_file(entry.path, expect_name=entry.name)


def list_devices(pattern: str = "*") -> list[DeviceProfile]:
    """Profiles whose name matches a shell wildcard (``'pixel*'``), sorted by name."""
    return [
        load_profile_file(e.path, expect_name=e.name)
        for name, e in sorted(_entries().items())
        if fnmatch.fnmatchcase(name, pattern)
    ]


def profile_origin(name: str) -> ProfileEntry | None:
    return _entries().get(name)


def profile_to_yaml(profile: DeviceProfile) -> str:
    data = profile.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
