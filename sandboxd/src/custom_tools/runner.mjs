// Dari's runner for a TypeScript or JavaScript custom tool, run as
// `node|tsx <this> <handler> <function> <shown>`.
//
// The input arrives on stdin as JSON. The handler is imported by URL, its named export is called
// with the input and awaited, and one JSON document goes to the file named by
// DARI_TOOL_RESULT_FILE: {"ok": true, "output": ...} or {"ok": false, "error": ..., "traceback": ...}.
// Whatever the handler prints stays on stdout and stderr, which are its logs.

import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [handlerPath, functionName, shownName] = process.argv.slice(2);
const resultPath = process.env.DARI_TOOL_RESULT_FILE;
delete process.env.DARI_TOOL_RESULT_FILE;

function describe(error) {
  if (error instanceof Error) {
    return error.message ? `${error.name}: ${error.message}` : error.name;
  }
  try {
    return `thrown ${typeName(error)}: ${JSON.stringify(error) ?? String(error)}`;
  } catch {
    return `thrown ${typeName(error)}`;
  }
}

function failure(message, error) {
  const traceback = error instanceof Error && typeof error.stack === "string" ? error.stack : "";
  return { ok: false, error: message, traceback };
}

function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function call() {
  let input;
  try {
    input = await readInput();
  } catch (error) {
    return failure(`the input is not JSON: ${describe(error)}`, error);
  }
  let module;
  try {
    module = await import(pathToFileURL(handlerPath).href);
  } catch (error) {
    return failure(`import ${shownName}: ${describe(error)}`, error);
  }
  let handler = module[functionName];
  if (handler === undefined && module.default != null) handler = module.default[functionName];
  if (handler === undefined) {
    return failure(`${shownName} exports no function named ${JSON.stringify(functionName)}`);
  }
  if (typeof handler !== "function") {
    return failure(`${shownName}: export ${JSON.stringify(functionName)} is a ${typeName(handler)}, not a function`);
  }
  let value;
  try {
    value = await handler(input);
  } catch (error) {
    return failure(describe(error), error);
  }
  const notJson = (reason) =>
    failure(`${functionName} returned a value that is not JSON-serializable (${typeName(value)}): ${reason}`);
  if (typeof value === "function" || typeof value === "symbol") return notJson("JSON has no such value");
  try {
    return JSON.stringify({ ok: true, output: value === undefined ? null : value });
  } catch (error) {
    return notJson(describe(error));
  }
}

const result = await call();
writeFileSync(resultPath, typeof result === "string" ? result : JSON.stringify(result));
// Timers or servers the handler left behind must not hold the call open.
process.exit(0);
