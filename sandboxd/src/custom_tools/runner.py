"""Dari's runner for a Python custom tool, run as `python3 -u -B -c <this> <handler> <function> <shown>`.

The input arrives on stdin as JSON. The handler file is imported by path (its directory first on
sys.path, so that sibling modules import), the function is called with the input and awaited if it
returns an awaitable, and one JSON document goes to the file named by DARI_TOOL_RESULT_FILE:
{"ok": true, "output": ...} or {"ok": false, "error": ..., "traceback": ...}. Whatever the handler
prints stays on stdout and stderr, which are its logs.
"""

import asyncio
import importlib.machinery
import importlib.util
import inspect
import json
import os
import sys
import traceback

MODULE_NAME = "__dari_tool_handler__"


def describe(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def failure(message, error=None):
    text = ""
    if error is not None:
        # The first frame is this runner's; the handler's frames follow it.
        frames = error.__traceback__
        if frames is not None and frames.tb_next is not None:
            frames = frames.tb_next
        text = "".join(traceback.format_exception(type(error), error, frames))
    return {"ok": False, "error": message, "traceback": text}


async def settle(awaitable):
    return await awaitable


def import_handler(handler_path):
    loader = importlib.machinery.SourceFileLoader(MODULE_NAME, handler_path)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, handler_path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    loader.exec_module(module)
    return module


def call(handler_path, function_name, shown_name):
    try:
        payload = json.loads(sys.stdin.buffer.read())
    except ValueError as error:
        return failure(f"the input is not JSON: {error}")
    sys.path.insert(0, os.path.dirname(handler_path))
    sys.argv = [handler_path]
    try:
        module = import_handler(handler_path)
    except BaseException as error:
        return failure(f"import {shown_name}: {describe(error)}", error)
    missing = object()
    function = getattr(module, function_name, missing)
    if function is missing:
        return failure(f"{shown_name} defines no function named {function_name!r}")
    if not callable(function):
        kind = type(function).__name__
        return failure(f"{shown_name}: {function_name!r} is a {kind}, not a function")
    try:
        value = function(payload)
        if inspect.isawaitable(value):
            value = asyncio.run(settle(value))
    except BaseException as error:
        return failure(describe(error), error)
    try:
        return json.dumps({"ok": True, "output": value}, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        kind = type(value).__name__
        return failure(f"{function_name} returned a value that is not JSON-serializable ({kind}): {error}")


def main():
    result_path = os.environ.pop("DARI_TOOL_RESULT_FILE")
    handler_path, function_name, shown_name = sys.argv[1:4]
    result = call(handler_path, function_name, shown_name)
    with open(result_path, "w", encoding="utf-8") as result_file:
        result_file.write(result if isinstance(result, str) else json.dumps(result))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Threads or atexit hooks the handler left behind must not hold the call open.
    os._exit(0)


main()
