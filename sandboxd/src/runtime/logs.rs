//! A bounded ring of the runtime server's recent log lines, quoted in errors.

use std::collections::VecDeque;

/// How many lines are kept.
const CAPACITY_LINES: usize = 500;
/// How many bytes are kept across all lines.
const CAPACITY_BYTES: usize = 256 * 1024;
/// The longest line kept; longer lines are cut.
const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug, Default)]
pub struct LogRing {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    pub fn new() -> LogRing {
        LogRing::default()
    }

    pub fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > CAPACITY_LINES || self.bytes > CAPACITY_BYTES {
            match self.lines.pop_front() {
                Some(oldest) => self.bytes -= oldest.len(),
                None => break,
            }
        }
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<String> {
        self.lines.iter().skip(self.lines.len().saturating_sub(n)).cloned().collect()
    }

    pub fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }
}

/// A line without its line ending, cut to a bounded length on a character boundary.
pub fn clip(line: &str) -> String {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.len() <= MAX_LINE_BYTES {
        return line.to_owned();
    }
    let mut cut = MAX_LINE_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &line[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recent_lines_within_bounds() {
        let mut ring = LogRing::new();
        for index in 0..1000 {
            ring.push(index.to_string());
        }
        assert_eq!(ring.last(2), ["998", "999"]);
        assert_eq!(ring.lines.len(), CAPACITY_LINES);
        ring.push("x".repeat(CAPACITY_BYTES));
        assert!(ring.bytes <= CAPACITY_BYTES);
    }

    #[test]
    fn clips_long_lines_on_a_character_boundary() {
        assert_eq!(clip("hello\r\n"), "hello");
        let long = "é".repeat(MAX_LINE_BYTES);
        assert!(clip(&long).len() <= MAX_LINE_BYTES + "…".len());
    }
}
