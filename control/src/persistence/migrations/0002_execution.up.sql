-- Execution: sandboxes, the work queue's leases, and each session's runtime state.

-- One row per sandbox a session has had. At most one is live (provisioning or ready) per session.
CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    session_id TEXT NOT NULL REFERENCES sessions (id),
    provider TEXT NOT NULL,
    -- provisioning, ready or terminated.
    status TEXT NOT NULL,
    -- SHA-256 of the sandbox's link token, hex. The token itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    -- The link URL the sandbox was given: the replica that provisioned it, which adopts it again
    -- after a restart.
    control_url TEXT NOT NULL,
    -- The provider's own handle (JSON), enough to destroy the sandbox from another process.
    handle TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ready_at BIGINT,
    last_used_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
CREATE UNIQUE INDEX sandboxes_live_per_session ON sandboxes (session_id) WHERE status IN ('provisioning', 'ready');
CREATE INDEX sandboxes_by_status ON sandboxes (status, last_used_at);

-- The custom runtime's state (JSON), as its last answer left it; NULL before the first or after
-- a runtime cleared it.
ALTER TABLE sessions ADD COLUMN runtime_state TEXT;

-- A worker's claim on a message it runs: who holds it and until when. An expired lease is taken
-- over by another worker.
ALTER TABLE messages ADD COLUMN lease_owner TEXT;
ALTER TABLE messages ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX messages_claimable ON messages (status, lease_expires_at, created_at);

-- The sha256 of a session's last workspace archive, which a new sandbox checks when restoring it.
ALTER TABLE session_workspaces ADD COLUMN sha256 TEXT;
