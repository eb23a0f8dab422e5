//! Errors of the crates below (object store, Parquet, Arrow) wrapped into
//! [`Error`], their messages sanitized: an object store's or a parser's
//! text may quote a URL with credentials or a signed query.

use std::fmt;

use super::{Error, Location};
use crate::redact::sanitize;

/// An error's message and its sources', joined by `": "` (a source whose
/// message is already in the text, as many wrappers quote theirs, is not
/// repeated).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        next = s.source();
    }
    text
}

/// A message that replaced an error whose text carried a secret: the
/// original chain of messages, [`sanitize`]d, without further sources.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `e` as a [`Redacted`] box when its chain of messages needs sanitizing;
/// `None` when it is clean as it is.
fn redacted(e: &(dyn std::error::Error + 'static)) -> Option<BoxError> {
    let text = chain_text(e);
    let clean = sanitize(&text);
    (clean != text).then(|| Box::new(Redacted(clean)) as BoxError)
}

/// An object store error whose messages (paths, request URLs, the messages
/// of its sources) carry no secret: the same variant where it has a path
/// and a boxed source, a generic one otherwise.
fn clean_store_error(e: object_store::Error) -> object_store::Error {
    use object_store::Error as E;
    if redacted(&e).is_none() {
        return e;
    }
    let fix = |source: BoxError| redacted(&*source).unwrap_or(source);
    match e {
        E::Generic { store, source } => E::Generic {
            store,
            source: fix(source),
        },
        E::NotFound { path, source } => E::NotFound {
            path: sanitize(&path),
            source: fix(source),
        },
        E::NotSupported { source } => E::NotSupported {
            source: fix(source),
        },
        E::AlreadyExists { path, source } => E::AlreadyExists {
            path: sanitize(&path),
            source: fix(source),
        },
        E::Precondition { path, source } => E::Precondition {
            path: sanitize(&path),
            source: fix(source),
        },
        E::NotModified { path, source } => E::NotModified {
            path: sanitize(&path),
            source: fix(source),
        },
        E::PermissionDenied { path, source } => E::PermissionDenied {
            path: sanitize(&path),
            source: fix(source),
        },
        E::Unauthenticated { path, source } => E::Unauthenticated {
            path: sanitize(&path),
            source: fix(source),
        },
        other => E::Generic {
            store: "object store",
            source: Box::new(Redacted(sanitize(&chain_text(&other)))),
        },
    }
}

impl From<object_store::Error> for Error {
    /// Object store errors quote request URLs (with their queries, which
    /// may hold signatures) and the messages of HTTP clients: they are
    /// [`sanitize`]d here, where every store error enters this type.
    fn from(source: object_store::Error) -> Self {
        Error::Store {
            source: clean_store_error(source),
        }
    }
}

impl Error {
    /// A Parquet error about `file`; its messages are [`sanitize`]d (an
    /// external error may be an object store's, quoting a URL).
    pub fn parquet(file: impl Into<String>, source: parquet::errors::ParquetError) -> Self {
        use parquet::errors::ParquetError as P;
        let source = match source {
            P::External(e) => P::External(redacted(&*e).unwrap_or(e)),
            P::General(m) => P::General(sanitize(&m)),
            P::EOF(m) => P::EOF(sanitize(&m)),
            P::ArrowError(m) => P::ArrowError(sanitize(&m)),
            P::NYI(m) => P::NYI(sanitize(&m)),
            other => other,
        };
        Error::Parquet {
            file: file.into(),
            source,
        }
    }
    /// An Arrow error about `file`, its messages [`sanitize`]d.
    pub fn arrow(file: impl Into<String>, source: arrow_schema::ArrowError) -> Self {
        use arrow_schema::ArrowError as A;
        let source = match source {
            A::ExternalError(e) => A::ExternalError(redacted(&*e).unwrap_or(e)),
            other => match redacted(&other) {
                Some(clean) => A::ExternalError(clean),
                None => other,
            },
        };
        Error::Arrow {
            file: file.into(),
            source,
        }
    }
    /// An I/O error about the local `path`, its messages [`sanitize`]d.
    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        let source = match redacted(&source) {
            Some(clean) => std::io::Error::new(source.kind(), clean),
            None => source,
        };
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A JSON error about `file` (serde quotes the input it refused: its
    /// message is [`sanitize`]d).
    pub(crate) fn json(file: impl Into<String>, source: serde_json::Error) -> Self {
        let source = match redacted(&source) {
            Some(clean) => <serde_json::Error as serde::de::Error>::custom(clean),
            None => source,
        };
        Error::Json {
            file: file.into(),
            source,
        }
    }
    pub(crate) fn value(location: Location, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            location,
            reason: reason.into(),
        }
    }
    pub(crate) fn schema(location: Location, reason: impl Into<String>) -> Self {
        Error::Schema {
            location,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_URL: &str = "GET https://user:topsecret@host/x?sig=abc failed";

    /// Every message of `e` and of its sources, as the command prints them.
    fn printed(e: &Error) -> String {
        let mut text = e.to_string();
        let mut next = std::error::Error::source(e);
        while let Some(s) = next {
            text.push_str(&format!("\n{s}"));
            next = s.source();
        }
        text
    }

    fn assert_clean(e: &Error) {
        let text = printed(e);
        assert!(
            !text.contains("topsecret") && !text.contains("sig=abc"),
            "{text}"
        );
        assert!(text.contains("https://***@host/x?***"), "{text}");
    }

    #[test]
    fn store_errors_and_their_sources_are_redacted() {
        let inner = || -> BoxError { SECRET_URL.into() };
        for e in [
            object_store::Error::Generic {
                store: "S3",
                source: inner(),
            },
            object_store::Error::NotFound {
                path: "x".into(),
                source: inner(),
            },
            object_store::Error::Unauthenticated {
                path: "https://user:topsecret@host/x?sig=abc".into(),
                source: inner(),
            },
        ] {
            let e = Error::from(e);
            assert_clean(&e);
            // The variant is kept: callers still tell NotFound apart.
            if let Error::Store { source } = &e {
                assert!(!format!("{source:?}").contains("topsecret"));
            }
        }
        let nf = Error::from(object_store::Error::NotFound {
            path: "a/b".into(),
            source: inner(),
        });
        assert!(matches!(
            nf,
            Error::Store {
                source: object_store::Error::NotFound { .. }
            }
        ));
        // A clean error is kept as it is.
        let e = Error::from(object_store::Error::NotFound {
            path: "a/b".into(),
            source: "no such file".into(),
        });
        assert_eq!(printed(&e).lines().count(), 3, "{}", printed(&e));
    }

    #[test]
    fn wrapped_errors_are_redacted_where_they_enter() {
        use parquet::errors::ParquetError;
        assert_clean(&Error::parquet(
            "f.parquet",
            ParquetError::External(SECRET_URL.into()),
        ));
        assert_clean(&Error::parquet(
            "f.parquet",
            ParquetError::General(SECRET_URL.into()),
        ));
        assert_clean(&Error::arrow(
            "f.parquet",
            arrow_schema::ArrowError::ExternalError(SECRET_URL.into()),
        ));
        assert_clean(&Error::arrow(
            "f.parquet",
            arrow_schema::ArrowError::ComputeError(SECRET_URL.into()),
        ));
        assert_clean(&Error::io(
            "f",
            std::io::Error::other(SECRET_URL.to_string()),
        ));
        let json =
            serde_json::from_str::<u32>("\"https://user:topsecret@host/x?sig=abc\"").unwrap_err();
        assert_clean(&Error::json("task.json", json));
        assert_clean(&Error::InvalidUrl {
            url: "https://user:topsecret@host/x?sig=abc".into(),
            reason: "unsupported".into(),
        });
    }

    #[test]
    fn messages_escape_control_characters_but_line_breaks() {
        let e = Error::value(
            Location::file("labels/x.parquet").at(3, Some("id\u{1b}[2J")),
            "teacher said:\n\tline\r\u{1b}[31mred",
        );
        let text = e.to_string();
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text}");
        assert!(text.contains("\n\tline\\r\\u{1b}[31mred"), "{text}");
    }
}
