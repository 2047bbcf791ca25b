//! The CLI's one error type: a sentence for the user, printed as
//! `faas: <sentence>` with exit code 1. Every failure, local or remote, is
//! turned into one of these where it happens, so `main` never shows a Rust
//! `Debug` dump.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// Something the user should read.
    Failed(String),
    /// No answer from the gateway: retrying other work against it is
    /// pointless.
    Unreachable(String),
    /// Standard output was closed (`faas logs x | head`): stop quietly, as
    /// other Unix tools do.
    BrokenPipe,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error::Failed(message.into())
    }

    /// A failure to write our own output.
    pub fn stdout(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::new(format!(
                "cannot write to standard output: {}",
                io_reason(&e)
            ))
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Failed(message) | Error::Unreachable(message) => f.write_str(message),
            Error::BrokenPipe => f.write_str("standard output was closed"),
        }
    }
}

/// An I/O error as a short lower-case phrase ("connection refused"), without
/// the "(os error 111)" suffix that means nothing to a user.
pub fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let known = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        NotFound => "no such file or directory",
        PermissionDenied => "permission denied",
        UnexpectedEof => "the connection closed early",
        AddrNotAvailable => "address not available",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown I/O error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_as_short_phrases() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_reason(&refused), "connection refused");
        let os = io::Error::from_raw_os_error(libc_enetunreach());
        assert!(!io_reason(&os).contains("os error"), "{}", io_reason(&os));
        assert!(io_reason(&os).starts_with(|c: char| c.is_lowercase()));
    }

    /// ENETUNREACH on Linux.
    fn libc_enetunreach() -> i32 {
        101
    }

    #[test]
    fn a_closed_stdout_is_quiet() {
        assert!(matches!(
            Error::stdout(io::Error::from(io::ErrorKind::BrokenPipe)),
            Error::BrokenPipe
        ));
    }
}
