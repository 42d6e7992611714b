-- The managed pi harness: each session's conversation with its model, one row per entry, written
-- step by step (a model answer, a tool result, a compaction summary), so that a worker that takes
-- over a message resumes from the last committed step.
CREATE TABLE conversation_entries (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    -- 1, 2, 3, … within the session.
    position BIGINT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages (id),
    -- The entry as JSON (`harness::pi::model::Entry`).
    entry TEXT NOT NULL,
    -- 1 once a compaction summary replaced it in the model's context.
    compacted INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE INDEX conversation_entries_by_message ON conversation_entries (message_id, position);

-- A message waiting for external tool results is claimed again at this time (milliseconds), to
-- give the model a timeout error for the results that did not come.
ALTER TABLE messages ADD COLUMN wait_until BIGINT;

-- Where the tool calls of a message's latest model answer were sent: `{sandbox_id}:{boot_id}`.
-- A worker that resumes the message asks that daemon again (it answers a repeated request from
-- its record); any other daemon never saw them, and runs nothing twice.
ALTER TABLE messages ADD COLUMN tools_dispatched_to TEXT;
