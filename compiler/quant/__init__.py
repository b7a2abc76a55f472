"""Quantization schemes (names, meaning) and the per-format handlers that apply them."""

from .schemes import SCHEMES, Precision, Scheme, SchemeName, get_scheme, is_int8

__all__ = ["SCHEMES", "Precision", "Scheme", "SchemeName", "get_scheme", "is_int8"]
