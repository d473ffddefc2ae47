//! A container's stdout and stderr as the engine keeps them (its json-file log, bounded per
//! container at create: see `log_config` in the sandbox module), one timestamped line at a
//! time. With `follow`, the stream stays open and yields new lines until the container stops
//! or the stream is dropped; dropping it closes the engine request.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::{Stream, StreamExt};

use super::{Docker, RuntimeError};

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The engine's RFC 3339 timestamp (nanoseconds) of the line.
    pub time: String,
    pub stream: LogStream,
    /// The line, without its newline.
    pub text: String,
}

impl Docker {
    /// The logs of container `id`: the last `tail` lines (all when `None`), then, with
    /// `follow`, new ones as they come. [`RuntimeError::NotFound`] when there is no such
    /// container.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> impl Stream<Item = Result<LogLine, RuntimeError>> + Send + 'static {
        let tail = tail.map_or("all".to_string(), |n| n.to_string());
        let options =
            LogsOptionsBuilder::new().follow(follow).stdout(true).stderr(true).timestamps(true).tail(&tail).build();
        let id = id.to_string();
        self.inner.logs(&id, Some(options)).filter_map(move |item| {
            let out = match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(parse(LogStream::Stdout, &message))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(parse(LogStream::Stderr, &message))),
                // No TTY and no stdin attached: nothing else is logged.
                Ok(_) => None,
                Err(e) => Some(Err(RuntimeError::for_container(&id, e))),
            };
            futures::future::ready(out)
        })
    }
}

/// Splits the engine's `TIMESTAMP SP TEXT` line.
fn parse(stream: LogStream, message: &[u8]) -> LogLine {
    let line = String::from_utf8_lossy(message);
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let (time, text) = line.split_once(' ').unwrap_or(("", line));
    LogLine { time: time.to_string(), stream, text: text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamped_line_splits_at_the_first_space() {
        let l = parse(LogStream::Stderr, b"2026-12-03T13:00:00.123456789Z hello world\n");
        assert_eq!(l.time, "2026-12-03T13:00:00.123456789Z");
        assert_eq!(l.text, "hello world");
        assert_eq!(parse(LogStream::Stdout, b"2026-12-03T13:00:00Z \n").text, "");
    }
}
