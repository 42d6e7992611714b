-- The first schema: organizations and their keys and credentials, source snapshots, agents and
-- versions, sessions, their ledger and messages, uploaded files, and workspace archives.
--
-- Written once for SQLite and PostgreSQL: TEXT and BIGINT only; times are Unix milliseconds;
-- booleans are 0/1; JSON is TEXT; binary values are base64 TEXT; ids are made by the server.

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- 1 for the organization made when the server first started: its keys may create others.
    operator BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    label TEXT NOT NULL,
    -- The first characters of the key, shown in lists so a user can tell keys apart.
    prefix TEXT NOT NULL,
    -- SHA-256 of the whole key, hex. The key itself is never stored.
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, created_at);

CREATE TABLE credentials (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    -- The value sealed with the master key (see control::secrets), base64.
    sealed_value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE source_snapshots (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    -- reserved, uploaded, ready or failed.
    status TEXT NOT NULL,
    failure_reason TEXT,
    upload_token_hash TEXT NOT NULL,
    upload_expires_at BIGINT NOT NULL,
    -- After finalize: the validated manifest (JSON), the bundle's file list (JSON), and the
    -- validation's diagnostics (JSON; errors when failed, warnings when ready).
    manifest TEXT,
    files TEXT,
    diagnostics TEXT,
    created_at BIGINT NOT NULL,
    finalized_at BIGINT,
    deleted_at BIGINT
);
CREATE INDEX source_snapshots_by_org ON source_snapshots (org_id, created_at);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    active_version_id TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
-- Agent names are unique within an organization among agents that are not deleted.
CREATE UNIQUE INDEX agents_live_name ON agents (org_id, name) WHERE deleted_at IS NULL;
CREATE INDEX agents_by_org ON agents (org_id, created_at);

CREATE TABLE agent_versions (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id),
    org_id TEXT NOT NULL REFERENCES organizations (id),
    -- 1, 2, 3, … within the agent.
    number BIGINT NOT NULL,
    source_snapshot_id TEXT NOT NULL REFERENCES source_snapshots (id),
    archive_sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    files TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (agent_id, number)
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    -- The agent's active version when the session was created: the session keeps it.
    version_id TEXT NOT NULL REFERENCES agent_versions (id),
    name TEXT,
    -- JSON object of strings; also one row per entry in session_metadata, for filtering.
    metadata TEXT NOT NULL,
    -- The llm.options entry the session uses (the manifest's default unless chosen); NULL when
    -- the version declares no llm.
    llm_id TEXT,
    -- 0 or 1: the request's choice, else the manifest's sandbox.internet_access.
    internet_access BIGINT NOT NULL,
    storage_binding_id TEXT,
    -- Session secrets (a JSON object) and the LLM key override, sealed (see control::secrets);
    -- never returned.
    sealed_secrets TEXT,
    sealed_llm_api_key TEXT,
    -- idle or running (see docs/sessions.md).
    status TEXT NOT NULL,
    last_message_id TEXT,
    last_message_status TEXT,
    -- The sequence number of the session's last ledger event, and of its last message.
    last_event_sequence BIGINT NOT NULL,
    last_message_sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Lists are newest first by id (ids are time-ordered), and paged by id.
CREATE INDEX sessions_by_agent ON sessions (org_id, agent_id, id);
CREATE INDEX sessions_by_org ON sessions (org_id, id);

-- One row per metadata entry, so that `GET /v1/sessions?metadata.KEY=VALUE` uses an index.
CREATE TABLE session_metadata (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    org_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX session_metadata_lookup ON session_metadata (org_id, key, value);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    sequence_number BIGINT NOT NULL,
    parts TEXT NOT NULL,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    output TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    UNIQUE (session_id, sequence_number)
);
CREATE INDEX messages_by_status ON messages (status, created_at);
CREATE INDEX messages_by_session_status ON messages (session_id, status);

-- The canonical ledger. An event's public id is `{session_id}:evt_{sequence_number}`.
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    sequence_number BIGINT NOT NULL,
    org_id TEXT NOT NULL,
    message_id TEXT,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    -- JSON: {"type", "id"}.
    actor TEXT NOT NULL,
    -- JSON: the type's payload (docs/sessions.md).
    data TEXT NOT NULL,
    -- The tool call a tool.* event is about, so that a submitted result finds its request.
    tool_call_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, sequence_number)
);
CREATE INDEX events_by_tool_call ON events (session_id, tool_call_id) WHERE tool_call_id IS NOT NULL;

-- Idempotency-Key of POST /v1/sessions/{id}/events: the key, a hash of the request, and the
-- event it recorded.
CREATE TABLE idempotency_keys (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    event_sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, key)
);

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX files_by_org ON files (org_id, created_at);

-- The last archive of a session's /workspace (a tar.gz in the blob store), replaced by each new
-- one; `GET /v1/sessions/{id}/workspace.zip` serves it.
CREATE TABLE session_workspaces (
    session_id TEXT PRIMARY KEY REFERENCES sessions (id),
    org_id TEXT NOT NULL REFERENCES organizations (id),
    blob_key TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
