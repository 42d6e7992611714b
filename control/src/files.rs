//! Uploaded files: what a name and a content type may be.
//!
//! A client names its upload and declares its type; neither is trusted. The name is reduced to a
//! leaf a user can read and no one can use as a path; the type of an image is read from its
//! leading bytes, because `image` content blocks hand the bytes to a model as that type.

pub use dari_protocol::tools::{IMAGE_MIME_TYPES, IMAGE_SNIFF_BYTES, image_mime_type};

/// The type of a file that is neither a recognised image nor declared as something else.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The name of an upload whose given name has nothing left after [`normalize_filename`].
pub const DEFAULT_FILENAME: &str = "upload";

/// The longest name kept, in bytes (what most file systems allow for one name).
pub const MAX_FILENAME_BYTES: usize = 255;

/// The longest content type kept from a client's declaration.
const MAX_CONTENT_TYPE_LEN: usize = 255;

/// An extension longer than this is not worth keeping when a long name is shortened.
const MAX_KEPT_EXTENSION_BYTES: usize = 16;

/// The leaf of a client's file name: everything up to the last `/` or `\` is dropped, control
/// and bidirectional-override characters are removed, surrounding blanks are trimmed, `.` and
/// `..` count as nothing, and a name longer than [`MAX_FILENAME_BYTES`] is shortened keeping its
/// extension. Nothing left, or no name given, gives [`DEFAULT_FILENAME`].
pub fn normalize_filename(given: Option<&str>) -> String {
    let given = given.unwrap_or_default();
    let leaf = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = leaf.chars().filter(|character| !is_hidden_character(*character)).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return DEFAULT_FILENAME.to_owned();
    }
    shorten(cleaned)
}

/// The content type to store for an upload: the sniffed image type; else the client's
/// declaration when it is a well-formed type and does not claim to be an image the bytes are not;
/// else [`DEFAULT_CONTENT_TYPE`].
pub fn upload_content_type(head: &[u8], declared: Option<&str>) -> String {
    if let Some(image) = image_mime_type(head) {
        return image.to_owned();
    }
    declared
        .map(|declared| declared.trim().to_ascii_lowercase())
        .filter(|declared| is_content_type(declared) && !is_image_content_type(essence(declared)))
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned())
}

/// True for the types an `image` content block takes.
pub fn is_image_content_type(content_type: &str) -> bool {
    IMAGE_MIME_TYPES.contains(&essence(content_type))
}

/// `type/subtype`, without parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// Characters that would let a name hide what it is or break a header or a terminal: controls
/// (C0, DEL, C1) and the marks that reorder text (`evil\u{202e}txt.exe`).
fn is_hidden_character(character: char) -> bool {
    character.is_control()
        || matches!(character, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `name` cut to [`MAX_FILENAME_BYTES`] on a character boundary, keeping a short extension.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_FILENAME_BYTES {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES => &name[dot..],
        _ => "",
    };
    let mut end = MAX_FILENAME_BYTES - extension.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{extension}", name[..end].trim_end())
}

/// A media type as RFC 9110 writes it: `type/subtype` of token characters, then parameters
/// (checked only for visible ASCII, so that the value is a valid header).
fn is_content_type(text: &str) -> bool {
    let is_token = |part: &str| {
        !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&byte))
    };
    let (media_type, parameters) = text.split_once(';').unwrap_or((text, ""));
    text.len() <= MAX_CONTENT_TYPE_LEN
        && media_type.trim().split_once('/').is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype))
        && parameters.bytes().all(|byte| byte == b' ' || byte.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
