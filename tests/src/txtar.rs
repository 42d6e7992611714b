//! The txtar format (from Go's tooling): a comment, then files each introduced by `-- name --`.
//! The manifest corpus uses it so that each case is one readable file.

/// A parsed archive: the comment lines before the first file, and the files in order.
#[derive(Debug)]
pub struct Txtar {
    pub comment: Vec<String>,
    pub files: Vec<(String, String)>,
}

pub fn parse(text: &str) -> Txtar {
    let mut comment = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end_matches('\n');
        if let Some(name) = trimmed.strip_prefix("-- ").and_then(|rest| rest.strip_suffix(" --")) {
            files.push((name.to_owned(), String::new()));
        } else if let Some((_, contents)) = files.last_mut() {
            contents.push_str(line);
        } else {
            comment.push(trimmed.to_owned());
        }
    }
    Txtar { comment, files }
}

impl Txtar {
    /// The values of `key: value` comment lines.
    pub fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.comment.iter().filter_map(move |line| line.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
    }
}
