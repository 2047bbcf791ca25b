//! Messages a person reads in one line: an engine's multi-line refusal, a
//! function's stderr, an error and its causes.

/// Any text as one line, its whitespace runs collapsed to single spaces.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `message` as one line cut at `limit` characters, marked with `…` when cut.
pub fn one_line_cut(message: &str, limit: usize) -> String {
    let line = one_line(message);
    match line.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// An error and its causes on one line, each said once ("client error
/// (Connect): tcp connect error: Connection refused"): libraries often
/// repeat their cause in their own message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    one_line(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_and_marked() {
        assert_eq!(one_line_cut("ab\ncd", 10), "ab cd");
        assert_eq!(one_line_cut("héllo wörld", 4), "héll…");
        assert_eq!(one_line_cut("abcd", 4), "abcd");
    }

    #[test]
    fn causes_are_said_once() {
        let e = Chain(
            "client error (Connect)",
            Some(Box::new(Chain(
                "Connect",
                Some(Box::new(Chain("connection\nrefused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): connection refused"
        );
        let single = Chain("no such file", None);
        assert_eq!(error_chain(&single), "no such file");
    }
}
