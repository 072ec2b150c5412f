//! The one output policy, and the only code that prints: what a command found or did (its
//! result, and data such as tables, JSON and the status) on stdout; what happens along the
//! way, notes, warnings and errors on stderr, as `PROGRAM: note: …`, `PROGRAM: warning: …`,
//! `PROGRAM: error: …`. A container's output goes through [`Terminal`] as it comes, its
//! stdout to stdout and its stderr to stderr; the build's by its own code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Display;

use tokio::io::AsyncWriteExt;

use crate::engine::LogOutput;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// The name the user called: `devbox`, or an in-container command's (`start-vnc`).
    program: &'static str,
}

impl Printer {
    pub const DEVBOX: Printer = Printer::new("devbox");

    pub const fn new(program: &'static str) -> Printer {
        Printer { program }
    }

    /// A result or data, on stdout; text that ends its own lines is printed as it is. When
    /// the reader has gone (`devbox jobs | head`), devbox ends quietly, as `ls` does.
    pub fn result(self, text: impl Display) {
        use std::io::Write;
        let text = text.to_string();
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = write!(stdout, "{text}{newline}").and_then(|()| stdout.flush()) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(i32::from(crate::exit::ExitStatus::Success.code()));
            }
            self.warning(format!("cannot write to stdout: {error}"));
        }
    }

    /// What is happening (progress), on stderr.
    pub fn progress(self, text: impl Display) {
        eprintln!("{text}");
    }

    /// Progress that the next line replaces in place, on a terminal's stderr.
    pub fn progress_in_place(self, text: impl Display) {
        eprint!("\r\x1b[K{text}");
    }

    pub fn note(self, text: impl Display) {
        eprintln!("{}: note: {text}", self.program);
    }

    pub fn warning(self, text: impl Display) {
        eprintln!("{}: warning: {text}", self.program);
    }

    /// An error, once: its message and, on the same line, each cause its message does not
    /// carry itself (every error type says its cause either in its text or as its source).
    pub fn error(self, error: &dyn std::error::Error) {
        eprintln!("{}: error: {}", self.program, chain(error));
    }
}

/// The error and its sources, joined as `outer: inner: innermost`: how an error is written
/// wherever it becomes text. A link that only repeats the one before (some libraries' errors
/// wrap an error of the same text) is said once.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let link = cause.to_string();
        if link != last {
            text.push_str(": ");
            text.push_str(&link);
        }
        last = link;
        source = cause.source();
    }
    text
}

/// `word` as a shell reads it back whole, for a command line devbox prints: as it is when it
/// holds nothing a shell would take apart, else in single quotes.
pub(crate) fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,@+".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Where a container's output goes as it comes: its stdout to devbox's, its stderr to devbox's.
pub(crate) struct Terminal {
    stdout: tokio::io::Stdout,
    stderr: tokio::io::Stderr,
}

impl Terminal {
    pub(crate) fn new() -> Terminal {
        Terminal {
            stdout: tokio::io::stdout(),
            stderr: tokio::io::stderr(),
        }
    }

    /// Writes one chunk of the output where it belongs.
    pub(crate) async fn write(&mut self, chunk: LogOutput) -> std::io::Result<()> {
        match chunk {
            LogOutput::StdErr { message } => self.stderr.write_all(&message).await,
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                self.stdout.write_all(&message).await?;
                self.stdout.flush().await
            }
            // What was sent to the program, echoed by the engine: not its output.
            LogOutput::StdIn { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_words_are_quoted_only_when_a_shell_would_split_them() {
        assert_eq!(super::shell_word("/home/ada/.env"), "/home/ada/.env");
        assert_eq!(super::shell_word("--from-file=a=b"), "--from-file=a=b");
        assert_eq!(super::shell_word("my project/.env"), "'my project/.env'");
        assert_eq!(super::shell_word("it's"), r"'it'\''s'");
        assert_eq!(super::shell_word(""), "''");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("while starting box")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("image x does not exist")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Repeating(#[source] std::io::Error);

    #[test]
    fn an_error_reads_as_its_context_then_its_causes() {
        assert_eq!(
            super::chain(&Outer(Inner)),
            "while starting box: image x does not exist"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] Repeating);

    #[test]
    fn a_cause_that_repeats_its_wrapper_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        assert_eq!(
            super::chain(&Wrapper(Repeating(io))),
            "client error (Connect): Permission denied"
        );
    }
}
