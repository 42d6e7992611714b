#!/usr/bin/env bash
set -euo pipefail

python3 -m pip install --quiet claude-agent-sdk fastapi uvicorn
npm install -g @anthropic-ai/claude-code
