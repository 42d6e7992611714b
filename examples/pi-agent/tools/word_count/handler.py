"""Counts the lines, words and characters of a workspace file."""

from pathlib import Path

WORKSPACE = Path("/workspace")


def main(input: dict) -> dict:
    path = (WORKSPACE / input["path"]).resolve()
    if WORKSPACE.resolve() not in path.parents:
        raise ValueError(f"{input['path']} is outside the workspace")
    text = path.read_text(encoding="utf-8")
    return {"lines": text.count("\n"), "words": len(text.split()), "characters": len(text)}
