//! The system prompt and skills of a pi agent (being written).
