"""The generation tasks the suites share: maskbench JSON schemas with one prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ananke.types import PyConstraintIR, PyGenerationRequest

PROMPT = "Produce one realistic example instance of this JSON data."


@dataclass(frozen=True)
class SchemaTask:
    name: str  # the maskbench file's stem, e.g. Github_easy---o10008
    schema: str  # JSON text

    @property
    def subset(self) -> str:
        return self.name.split("---")[0]

    def request(self, max_tokens: int, prompt: str = PROMPT) -> PyGenerationRequest:
        return PyGenerationRequest(prompt, [PyConstraintIR("s", json_schema=self.schema)], max_tokens, 0.0)


def maskbench_files(maskbench: Path) -> list[Path]:
    files = sorted(maskbench.glob("*.json"))
    if not files:
        raise SystemExit(f"no maskbench files in {maskbench}")
    return files


def maskbench_tasks(
    maskbench: Path, n: int, compiling_only: bool = False, subset: str | None = None
) -> list[SchemaTask]:
    """n schemas spread evenly over the sorted files (so over every subset, or only over `subset`,
    e.g. "Github_medium"); with `compiling_only`, those that Ananke compiles (for suites that
    compare Ananke with itself)."""
    from ananke.constraints import compile_constraints
    from ananke.errors import ConstraintCompileError

    files = maskbench_files(maskbench)
    if subset is not None:
        files = [f for f in files if f.stem.split("---")[0] == subset]
    stride = max(1, len(files) // (n * (3 if compiling_only else 1)))
    tasks = []
    for path in files[::stride]:
        task = SchemaTask(path.stem, json.dumps(json.loads(path.read_text())["schema"]))
        if compiling_only:
            try:
                compile_constraints([PyConstraintIR("s", json_schema=task.schema)])
            except ConstraintCompileError:
                continue
        tasks.append(task)
        if len(tasks) == n:
            break
    return tasks
