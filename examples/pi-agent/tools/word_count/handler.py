"""Counts the lines, words and characters of a workspace file."""

import os
from pathlib import Path

# The sandbox names its workspace; /workspace where it is mounted there.
WORKSPACE = Path(os.environ.get("DARI_WORKSPACE", "/workspace"))


def main(input: dict) -> dict:
    path = (WORKSPACE / input["path"]).resolve()
    if WORKSPACE.resolve() not in path.parents:
        raise ValueError(f"{input['path']} is outside the workspace")
    text = path.read_text(encoding="utf-8")
    return {"lines": text.count("\n"), "words": len(text.split()), "characters": len(text)}
