// A code-first tool: `dari deploy` finds this module, and the sandbox reads its exports.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export const description = "Search the files under /workspace for a text and return the matching lines.";

export const inputSchema = {
  type: "object",
  properties: {
    query: { type: "string", description: "Text to look for (case-sensitive)." },
    limit: { type: "integer", minimum: 1, maximum: 200, default: 50 },
  },
  required: ["query"],
  additionalProperties: false,
};

export const outputSchema = {
  type: "object",
  properties: {
    matches: { type: "array", items: { type: "string" } },
  },
  required: ["matches"],
};

type Input = { query: string; limit?: number };

export async function handler(input: Input): Promise<{ matches: string[] }> {
  const limit = input.limit ?? 50;
  const matches: string[] = [];
  for await (const file of walk("/workspace")) {
    const lines = (await readFile(file, "utf8")).split("\n");
    lines.forEach((line, index) => {
      if (matches.length < limit && line.includes(input.query)) {
        matches.push(`${file}:${index + 1}: ${line.slice(0, 200)}`);
      }
    });
    if (matches.length >= limit) break;
  }
  return { matches };
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === ".git" || entry.name === "node_modules" || entry.name === ".dari") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}
