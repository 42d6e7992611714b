ALTER TABLE messages DROP COLUMN tools_dispatched_to;
ALTER TABLE messages DROP COLUMN wait_until;
DROP INDEX conversation_entries_by_message;
DROP TABLE conversation_entries;
