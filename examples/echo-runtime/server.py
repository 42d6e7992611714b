"""An echo agent for the dari-runtime-v1 protocol, with no dependencies beyond Python 3.

GET  /health           -> 200 {"ok": true}
POST /runtime/advance  -> 200 {"text": "...", "state": {"turns": N}}

The platform passes the previous state back as state_ref.json (absent on the first turn), so the
turn count survives restarts of this process and of the whole sandbox.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 10 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    server_version = "echo-runtime/1"

    def do_GET(self) -> None:
        if self.path == "/health":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"detail": f"no route for GET {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/runtime/advance":
            self.reply(404, {"detail": f"no route for POST {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.reply(413, {"detail": "request body too large"})
            return
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as error:
            self.reply(400, {"detail": f"request body is not JSON: {error}"})
            return
        self.reply(200, advance(payload if isinstance(payload, dict) else {}))

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def advance(payload: dict) -> dict:
    state_ref = payload.get("state_ref")
    state = state_ref.get("json") if isinstance(state_ref, dict) else None
    turns = state.get("turns", 0) if isinstance(state, dict) else 0
    turns = (turns if isinstance(turns, int) else 0) + 1
    return {"text": f"echo: {user_text(payload.get('input'))} (turn {turns})", "state": {"turns": turns}}


def user_text(input_payload: object) -> str:
    if not isinstance(input_payload, dict) or input_payload.get("type") != "user_message":
        return json.dumps(input_payload)
    message = input_payload.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return ""
    return "\n".join(item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str))


def main() -> None:
    port = int(os.environ.get("PORT", "8787"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"echo-runtime listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
