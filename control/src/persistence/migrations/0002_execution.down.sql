ALTER TABLE session_workspaces DROP COLUMN sha256;
DROP INDEX messages_claimable;
ALTER TABLE messages DROP COLUMN lease_expires_at;
ALTER TABLE messages DROP COLUMN lease_owner;
ALTER TABLE sessions DROP COLUMN runtime_state;
DROP INDEX sandboxes_by_status;
DROP INDEX sandboxes_live_per_session;
DROP TABLE sandboxes;
