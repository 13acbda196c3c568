"""Build and load the CPU kernels (``sparse_linear.cpp``) as torch operators.

The extension is compiled once per machine with ``torch.utils.cpp_extension.load`` (g++,
ninja; ``-O3 -march=native``: the build is for the CPU it runs on) into a cache directory,
``$SPARSETORCH_KERNELS_DIR`` or ``~/.cache/sparsetorch/kernels``, under a name that hashes
the source, the flags, torch's version and the CPU, so that a changed source, another torch or
another machine sharing the home directory builds its own copy. ``make`` builds it
(``python -m sparsetorch.kernels.cpu``); otherwise the first use does (20-60 s on 2 cores).

When it cannot be built (no compiler, no ninja, an unsupported platform) or is switched off
with ``SPARSETORCH_CPU_KERNELS=0``, :func:`load` returns False, one RuntimeWarning says why,
and every caller uses the pure-torch twin (``reference.py``): same results, slower.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

import torch

NAME = "sparsetorch_cpu"
SOURCE = Path(__file__).with_name("sparse_linear.cpp")
# -fopenmp: at::parallel_for is a header template; without it, it compiles to a serial loop
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp")
DISABLE_ENV = "SPARSETORCH_CPU_KERNELS"
DIR_ENV = "SPARSETORCH_KERNELS_DIR"

_state: dict[str, object] = {"loaded": None, "error": None, "path": None, "warned": False}


def cache_root() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "sparsetorch" / "kernels")


def _cpu_signature() -> str:
    """The CPU model and feature flags (Linux), else the platform's processor string."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(dict.fromkeys(keep))  # one copy of each distinct line


def build_dir() -> Path:
    """Where this source, these flags, this torch and this CPU are built."""
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), torch.__version__.encode()):
        h.update(part)
    h.update(_cpu_signature().encode())
    h.update(sys.version.encode())
    return cache_root() / f"{NAME}-{h.hexdigest()[:16]}"


def _ninja_on_path() -> None:
    """cpp_extension calls ``ninja`` by name: make the pip-installed one (in the venv's bin,
    or the ``ninja`` package's own directory) findable when the venv is not activated."""
    if shutil.which("ninja"):
        return
    dirs = [str(Path(sys.executable).parent)]
    try:
        import ninja

        dirs.insert(0, ninja.BIN_DIR)
    except (ImportError, AttributeError):
        pass
    os.environ["PATH"] = os.pathsep.join([*dirs, os.environ.get("PATH", "")])


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def load(verbose: bool = False, warn: bool = True) -> bool:
    """Build (if needed) and load the kernels once per process; True when
    ``torch.ops.sparsetorch_cpu`` is usable. A failure warns once (``warn``) and is remembered."""
    if _state["loaded"] is None:
        _try_load(verbose)
    if not _state["loaded"] and warn and not _state["warned"] and not disabled():
        _state["warned"] = True
        warnings.warn(
            f"sparsetorch's CPU kernels are not available ({_state['error']}); sparse "
            "layers use the pure-torch fallback (same results, slower). See the compiler "
            "output with: python -m sparsetorch.kernels.cpu",
            RuntimeWarning,
            stacklevel=2,
        )
    return bool(_state["loaded"])


def _try_load(verbose: bool) -> None:
    if disabled():
        _state.update(loaded=False, error=f"switched off by {DISABLE_ENV}=0")
        return
    try:
        if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
            raise RuntimeError(f"unsupported machine {platform.machine()!r}")
        from torch.utils.cpp_extension import load as cpp_load

        path = build_dir()
        library = path / f"{NAME}.so"
        # built before for this source, torch and CPU, and no build running (cpp_extension
        # holds a "lock" file while it builds): load it without running ninja
        if library.is_file() and not (path / "lock").exists():
            torch.ops.load_library(str(library))
            _state.update(loaded=True, path=str(path))
            return
        _ninja_on_path()
        path.mkdir(parents=True, exist_ok=True)
        cpp_load(
            name=NAME,
            sources=[str(SOURCE)],
            extra_cflags=list(FLAGS),
            extra_ldflags=["-fopenmp"],
            build_directory=str(path),
            is_python_module=False,
            verbose=verbose,
        )
        _state.update(loaded=True, path=str(path))
    except Exception as exc:  # any build or load failure: the fallback takes over
        _state.update(loaded=False, error=_summary(exc))


def _summary(exc: Exception) -> str:
    """One line for a build failure: the compiler's first error line when there is one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("[")]
    line = (errors or lines or [""])[0]
    return f"{type(exc).__name__}: {line[:300]}"


def status() -> dict[str, object]:
    """{"loaded": bool | None (not tried yet), "error": str | None, "path": build dir,
    "warned": bool}."""
    return dict(_state)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sparsetorch.kernels.cpu",
        description="Build sparsetorch's CPU sparse kernels into the cache (make runs this).",
    )
    parser.add_argument("--quiet", action="store_true", help="no compiler output")
    args = parser.parse_args(argv)
    ok = load(verbose=not args.quiet, warn=False)
    if ok:
        print(f"sparsetorch CPU kernels: built in {_state['path']}")
        return 0
    print(f"sparsetorch CPU kernels: NOT built ({_state['error']}); the pure-torch fallback runs")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
