"""Keep converter chatter out of adaptc's output, and keep it for error messages.

litert-torch, ai-edge-quantizer, coremltools and torchao print progress bars, banners and C++ log lines
(absl, MLIR) straight to file descriptors 1 and 2, which ``contextlib.redirect_stdout`` cannot catch. While a
conversion runs, both descriptors point at a temporary file; what was printed is available afterwards
(``captured.text``) so an error can quote the converter's own last lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch._dynamo",
    "torch.fx",
    "onnxscript",
    "root",
    "coremltools",
    "absl",
    "litert_torch",
    "ai_edge_quantizer",
    "torchao",
    "jax",
    "tensorflow",
)


class Captured:
    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 5) -> str:
        keep = [ln for ln in self.text.splitlines() if ln.strip()]
        return "\n".join(keep[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Redirect file descriptors 1 and 2 to a temporary file for the block."""
    cap = Captured()
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    old_levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved: list[tuple[int, int]] = []
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(f.fileno(), fd)
                except OSError:
                    pass
            _litert_progress(False)  # importing litert-torch prints too: after the redirect
            # Only the descriptors are redirected: replacing sys.stdout/sys.stderr would leave logging
            # handlers created meanwhile (coremltools makes one on import) pointing at a closed stream.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield cap
        finally:
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            for lg, lvl in zip(loggers, old_levels):
                lg.setLevel(lvl)
            f.seek(0)
            cap.text = _strip_ansi(f.read().decode("utf-8", errors="replace"))


def _litert_progress(show: bool) -> None:
    try:
        from litert_torch import _config

        _config.config.show_progress = show
    except Exception:
        pass


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _strip_ansi(s: str) -> str:
    return _ANSI.sub("", s)


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first meaningful line of an exception message, without terminal colour codes."""
    text = _strip_ansi(str(err)).strip()
    if not text:
        return type(err).__name__
    for ln in text.splitlines():
        if ln.strip():
            return ln.strip()[:limit]
    return type(err).__name__


_OP_PATTERNS = (
    # litert-torch: "Lowering not found: aten.logcumsumexp.default"
    re.compile(r"Lowering not found: (aten\.[A-Za-z0-9_]+)"),
    # coremltools: "Unsupported fx node linalg_det, kind linalg_det"
    re.compile(r"Unsupported fx node \S+, kind ([A-Za-z0-9_:.]+)"),
    # coremltools: "PyTorch convert function for op 'foo' not implemented."
    re.compile(r"convert function for op '([A-Za-z0-9_:.]+)' not implemented"),
    # coremltools op translation errors: "node fft_rfft (fft_rfft) got 1 input(s), expected [4]"
    re.compile(r"node \S+ \(([A-Za-z0-9_:.]+)\) got"),
    re.compile(r"(aten[.:]{1,2}[A-Za-z0-9_]+)"),
    re.compile(r"operator[: ]+'?([A-Za-z0-9_.:]+)'?"),
    re.compile(r"op(?:erator)? type[: ]+'?([A-Za-z0-9_.:]+)'?"),
)


def unsupported_op(err: BaseException | str) -> str | None:
    """Best effort: the op a converter choked on, from its error message."""
    text = _strip_ansi(err if isinstance(err, str) else f"{type(err).__name__}: {err}")
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            op = m.group(1)
            return op[: -len(".default")] if op.endswith(".default") else op
    return None
