"""Keep every library we use off the network. Imported first by the package.

- tiktoken: read the BPE files llama-index-core ships instead of downloading them.
- Chroma: no telemetry. Gradio: no analytics. Hugging Face hub: offline.

`assistant doctor` asks here whether these guards hold (`tiktoken_problem`, `switched_back_on`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from importlib.util import find_spec
from pathlib import Path

#: The libraries' switches set here, with the values that keep them off the network.
QUIET = {"ANONYMIZED_TELEMETRY": "False", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
#: The BPE files tiktoken reads (cl100k_base: chunking and LLM context fitting) and would otherwise
#: download; it names a cached file by the SHA-1 of its download URL.
TIKTOKEN_FILES = {"cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"}


def _llama_index_tiktoken_cache() -> str | None:
    spec = find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return str(folder) if folder.is_dir() else None


def configure_offline() -> None:
    """Set the environment so that no dependency reaches for the network."""
    cache = _llama_index_tiktoken_cache()
    if cache:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", cache)
    for variable, value in QUIET.items():
        os.environ.setdefault(variable, value)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiktoken_cache() -> str | None:
    """The folder tiktoken reads its files from (None: it would download them)."""
    return os.environ.get("TIKTOKEN_CACHE_DIR")


def tiktoken_problem() -> str | None:
    """Why tiktoken would download a file it needs, or None when every one is in its cache."""
    folder = tiktoken_cache()
    if not folder:
        return "TIKTOKEN_CACHE_DIR is unset: tiktoken would download its files; is llama-index-core installed?"
    missing = [name for name, url in TIKTOKEN_FILES.items()
               if not (Path(folder) / hashlib.sha1(url.encode()).hexdigest()).is_file()]
    return f"{', '.join(missing)} not in {folder}: tiktoken would download it" if missing else None


def switched_back_on() -> list[str]:
    """The libraries' switches the environment sets otherwise than `QUIET` (`VAR=value`)."""
    return [f"{var}={os.environ.get(var)}" for var, value in QUIET.items()
            if os.environ.get(var, "").lower() != value.lower()]


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (nothing sent there leaves it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


configure_offline()
