"""Device profiles: the versioned schema and where profiles are found."""

from ..core.formats import FORMAT_RUNTIME
from .registry import (
    known_device_names,
    list_devices,
    load_profile,
    load_profile_file,
    parse_profile,
    profile_origin,
    profile_to_yaml,
    shipped_profile_dir,
    user_profile_dir,
)
from .schema import SCHEMA_VERSION, DeviceProfile, Format, Kind

__all__ = [
    "DeviceProfile",
    "FORMAT_RUNTIME",
    "Format",
    "Kind",
    "SCHEMA_VERSION",
    "known_device_names",
    "list_devices",
    "load_profile",
    "load_profile_file",
    "parse_profile",
    "profile_origin",
    "profile_to_yaml",
    "shipped_profile_dir",
    "user_profile_dir",
]
