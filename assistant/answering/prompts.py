"""Prompt templates, kept as files and read at run time.

Lookup order: `assistant/prompts/` inside the installed package (the wheel ships the repository's
`prompts/` folder there), then the repository's own `prompts/` (a source checkout). Templates use
`{name}` placeholders; `prompts/README.md` lists them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import BackendError

_PACKAGE = Path(__file__).resolve().parent.parent
PROMPT_DIRS = (_PACKAGE / "prompts", _PACKAGE.parent / "prompts")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def prompt_path(name: str, dirs: tuple[Path, ...] = PROMPT_DIRS) -> Path:
    """The file of prompt `name` (e.g. 'system' → system.md): the first folder that has it wins."""
    for folder in dirs:
        path = folder / f"{name}.md"
        if path.is_file():
            return path
    raise BackendError(f"prompt file {name}.md not found in {' or '.join(str(d) for d in dirs)}")


def load_prompt(name: str, dirs: tuple[Path, ...] = PROMPT_DIRS) -> str:
    """The text of prompt `name`, without trailing whitespace (read on each call, so edits apply at once)."""
    return prompt_path(name, dirs).read_text(encoding="utf-8").rstrip()


def placeholders(template: str) -> set[str]:
    """The `{name}` placeholders a template uses."""
    return set(_PLACEHOLDER.findall(template))


def render(template: str, **values: object) -> str:
    """Fill `{name}` placeholders in one pass (values are not scanned again)."""
    missing = placeholders(template) - values.keys()
    if missing:
        raise BackendError(f"prompt placeholder(s) {', '.join(sorted(missing))} have no value; "
                           f"known here: {', '.join(sorted(values))}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
