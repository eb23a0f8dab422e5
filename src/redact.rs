//! Text that must-ds prints about things it did not write itself: URLs
//! given on the command line (which may carry credentials), and strings
//! read from a log or a data file (which may carry terminal escapes).
//!
//! * [`redact`] hides the userinfo (`user:password@`) and the query
//!   (`?sig=…`) of every URL in a text.
//! * [`printable`] escapes control characters, so that a hostile
//!   `operation` or class name cannot clear the screen, move the cursor or
//!   overwrite a line with `\r`.

/// What replaces the userinfo and the query of a URL.
const HIDDEN: &str = "***";

/// Whether `c` may appear in a URL scheme (`[A-Za-z0-9+.-]`).
fn scheme_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
}

/// Whether `c` ends a URL inside a message: space, a control character,
/// or punctuation that wraps URLs in messages (quotes, brackets).
fn url_end(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | '\\'
        )
}

/// `text` with the secrets of every URL in it hidden: `scheme://user:pass@host`
/// becomes `scheme://***@host` and `…/path?query` becomes `…/path?***`
/// (a `#fragment` after the query goes with it). Text that is not part of a
/// `scheme://` URL is left as it is.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // The scheme: the run of scheme characters just before "://",
        // starting with a letter.
        let head = &rest.as_bytes()[..pos];
        let mut start = pos;
        while start > 0 && scheme_char(head[start - 1]) {
            start -= 1;
        }
        while start < pos && !head[start].is_ascii_alphabetic() {
            start += 1;
        }
        if start == pos {
            // Not a URL ("://" with no scheme): keep it and go on.
            out.push_str(&rest[..pos + 3]);
            rest = &rest[pos + 3..];
            continue;
        }
        out.push_str(&rest[..pos + 3]);
        let url = &rest[pos + 3..];
        let end = url.find(url_end).unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        // Authority: up to the first '/', '?' or '#'.
        let auth_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (auth, tail) = url.split_at(auth_end);
        match auth.rfind('@') {
            Some(at) => {
                out.push_str(HIDDEN);
                out.push_str(&auth[at..]);
            }
            None => out.push_str(auth),
        }
        match tail.find('?') {
            // Already redacted (a message quoting a redacted URL, then more
            // text): keep what follows.
            Some(q) if tail[q + 1..].starts_with(HIDDEN) => out.push_str(tail),
            Some(q) => {
                out.push_str(&tail[..=q]);
                out.push_str(HIDDEN);
            }
            None => out.push_str(tail),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether `c` changes how a terminal shows the text around it: C0 and C1
/// controls, DEL, and the Unicode bidirectional overrides and isolates.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
    }
}

/// `text` with every control character (ANSI escapes, `\r`, `\n`, other C0
/// and C1 controls, bidirectional overrides) written as an escape such as
/// `\u{1b}` or `\r`: safe to print on one line of a terminal.
pub fn printable(text: &str) -> String {
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] that keeps line breaks and tabs: for multi-line messages
/// (errors quoting a teacher's output).
pub fn printable_lines(text: &str) -> String {
    if !text
        .chars()
        .any(|c| unsafe_char(c) && c != '\n' && c != '\t')
    {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) && c != '\n' && c != '\t' {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// A message safe to print: URLs [`redact`]ed and controls escaped but for
/// line breaks and tabs ([`printable_lines`]).
pub fn sanitize(text: &str) -> String {
    printable_lines(&redact(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_queries_of_urls_are_hidden() {
        let cases = [
            (
                "https://user:topsecret@host/x?sig=abc",
                "https://***@host/x?***",
            ),
            ("s3://bucket/prefix?X-Amz-Signature=f00", "s3://bucket/prefix?***"),
            ("file://me:pw@localhost/tmp/d", "file://***@localhost/tmp/d"),
            ("az://TOKEN@acct/c", "az://***@acct/c"),
            (
                "invalid dataset location \"https://u:p@h/x?a=1&b=2\": unsupported",
                "invalid dataset location \"https://***@h/x?***\": unsupported",
            ),
            (
                "error sending request for url (http://127.0.0.1:9/b?list-type=2&prefix=x%2F) failed",
                "error sending request for url (http://127.0.0.1:9/b?***) failed",
            ),
            ("two: http://a@b/?q and gs://c/d?e f", "two: http://***@b/?*** and gs://c/d?*** f"),
            ("memory://name/x", "memory://name/x"),
            // Redacting twice changes nothing, and keeps what follows.
            ("at s3://***@b/x?***/_must/log", "at s3://***@b/x?***/_must/log"),
            ("/data/corpus what? no url", "/data/corpus what? no url"),
            ("weird ://x?y and 1://z", "weird ://x?y and 1://z"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
            assert!(!redact(input).contains("topsecret"));
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\u{1b}[2Jb\rc\nd"), "a\\u{1b}[2Jb\\rc\\nd");
        assert_eq!(
            printable("\u{9b}x\u{7f}\u{202e}"),
            "\\u{9b}x\\u{7f}\\u{202e}"
        );
        assert_eq!(printable("plain ünïcode 猫"), "plain ünïcode 猫");
        assert_eq!(printable_lines("a\n\tb\u{1b}"), "a\n\tb\\u{1b}");
        assert_eq!(
            sanitize("x https://u:p@h/?k=v\r\u{1b}"),
            "x https://***@h/?***\\r\\u{1b}"
        );
    }
}
