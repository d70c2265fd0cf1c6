//! memspy's error texts as the code renders them (`memspy::error::Error`), so that tests do not retype
//! them.

use memspy::error::Error;

/// Stands, in a field of an [`Error`] built by a test, for a part of the text the test cannot know (a
/// detail, a path, a version): see [`shows_error`].
pub const ANY: &str = "\u{1}";

/// Whether `line` (e.g. memspy's one line on stderr) ends with the text of `e`, where each [`ANY`] in
/// `e`'s fields matches any text.
pub fn shows_error(line: &str, e: &Error) -> bool {
    let text = e.to_string();
    let parts: Vec<&str> = text.split(ANY).collect();
    let (last, init) = parts.split_last().expect("split gives at least one part");
    let mut rest = line;
    for part in init {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}
