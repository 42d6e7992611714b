//! Decoding a byte stream as UTF-8 across read boundaries: a character split between two reads
//! is kept whole, and only truly invalid bytes become U+FFFD.

#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Decodes what can be decoded, keeping an incomplete character at the end for later.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.pending.clear();
                    return text;
                }
                Err(error) => {
                    let valid_up_to = error.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..valid_up_to]).unwrap_or_default());
                    match error.error_len() {
                        // An incomplete character at the end: wait for the rest.
                        None => {
                            self.pending.drain(..valid_up_to);
                            return text;
                        }
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid_up_to + invalid);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end of the stream, lossily.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_reads_stay_whole() {
        let mut stream = Utf8Stream::default();
        let bytes = "héllo €".as_bytes();
        let mut text = String::new();
        for byte in bytes {
            text.push_str(&stream.push(&[*byte]));
        }
        assert_eq!(text, "héllo €");
        assert_eq!(stream.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(stream.push(&[0xe2, 0x82]), "");
        assert_eq!(stream.finish(), "\u{fffd}");
    }
}
