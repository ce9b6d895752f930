"""User-facing errors: each names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input (a corpus file, a config value, an SAE that does not fit the model)."""

    def __init__(self, source: str | Path, field: str, problem: str, fix: str) -> None:
        self.source, self.field, self.problem, self.fix = str(source), field, problem, fix
        super().__init__(f"{source}: {field}: {problem}. Fix: {fix}")
