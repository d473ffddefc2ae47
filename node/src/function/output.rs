//! What function processes write to stderr on this node, kept for `flotilla logs fn`: the
//! worker process of each worker-mode replica, and each exec-mode call's command.
//!
//! Those processes run as execs inside the replica's container, so the engine's container log
//! (which holds only the container's main process) never sees them. Their stderr is already
//! read by the replica (to report failures); each chunk is also split into lines here, stamped
//! with the node's clock, and kept in a ring per function of at most [`LINES_PER_FUNCTION`]
//! lines (the oldest dropped), in memory only: a node restart forgets them. Followers
//! subscribe to a broadcast of new lines; one that falls more than [`FOLLOW_BUFFER`] lines
//! behind skips ahead (and is told how many it missed).
//!
//! A line split across two chunks of output becomes two lines; processes that write whole
//! lines (as loggers do) are not affected.
//!
//! **Calls.** Each line carries the durable calls (spawned calls, scheduled runs) it belongs
//! to, for `flotilla logs fn --call ID`. An exec-mode process runs one call, so its lines are
//! that call's. A worker process serves many: its lines go to the calls it was running when
//! they were read, and to those that ended less than [`LATE_LINES`] before and with no call
//! started since (the engine reads stdout, where the reply comes, and stderr, apart, so a
//! call's last line can arrive after its reply). With `concurrency > 1` a line is thus shown
//! for every call in flight with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

/// Most lines kept per function on a node.
pub const LINES_PER_FUNCTION: usize = 2000;
/// New lines a follower may fall behind by before it skips ahead.
pub const FOLLOW_BUFFER: usize = 1024;
/// How long after a call ended a worker's lines still count as the call's.
pub const LATE_LINES: Duration = Duration::from_millis(250);

/// One line of a function process's stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub app: String,
    pub function: String,
    /// RFC 3339 with nanoseconds (UTC), the node's clock when the line was read.
    pub time: String,
    /// The replica whose process wrote it.
    pub source: String,
    pub text: String,
    /// The calls it is attributed to (see the module docs).
    pub calls: Vec<String>,
}

/// Kept lines by (app, function).
type Rings = HashMap<(String, String), VecDeque<Line>>;

/// The node's function output. Cheap to clone; clones share the rings.
#[derive(Clone)]
pub struct OutputLog {
    rings: Arc<Mutex<Rings>>,
    tx: broadcast::Sender<Line>,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self { rings: Default::default(), tx: broadcast::channel(FOLLOW_BUFFER).0 }
    }
}

impl OutputLog {
    /// Keeps the lines of `chunk`, written by replica `source` of `app`/`function` while
    /// running `calls`.
    pub fn push(&self, app: &str, function: &str, source: &str, calls: &[String], chunk: &[u8]) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let text = String::from_utf8_lossy(chunk);
        let mut rings = self.rings.lock().expect("output lock");
        let ring = rings.entry((app.to_string(), function.to_string())).or_default();
        for piece in text.split_terminator('\n') {
            let line = Line {
                app: app.to_string(),
                function: function.to_string(),
                time: time.clone(),
                source: source.to_string(),
                text: piece.to_string(),
                calls: calls.to_vec(),
            };
            ring.push_back(line.clone());
            if ring.len() > LINES_PER_FUNCTION {
                ring.pop_front();
            }
            // No follower is not an error.
            let _ = self.tx.send(line);
        }
    }

    /// The kept lines of `app`/`function` (only those of `call` when given), the last `tail`
    /// of them (all when `None`), oldest first.
    pub fn lines(&self, app: &str, function: &str, call: Option<&str>, tail: Option<u64>) -> Vec<Line> {
        let rings = self.rings.lock().expect("output lock");
        let Some(ring) = rings.get(&(app.to_string(), function.to_string())) else { return vec![] };
        let mut found: Vec<Line> = ring.iter().filter(|l| l.is_of(call)).cloned().collect();
        let skip = tail.map_or(0, |n| found.len().saturating_sub(n as usize));
        found.drain(..skip);
        found
    }

    /// New lines of every function from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Line> {
        self.tx.subscribe()
    }
}

impl Line {
    /// Whether the line is `call`'s (any line when `None`).
    pub fn is_of(&self, call: Option<&str>) -> bool {
        call.is_none_or(|id| self.calls.iter().any(|c| c == id))
    }
}

/// The calls a process is running, and when each ended (`None`: still running).
type InFlight = Arc<Mutex<Vec<(String, Option<Instant>)>>>;

/// Where one replica's process output goes.
#[derive(Clone)]
pub struct Sink {
    pub log: OutputLog,
    pub app: String,
    pub function: String,
    pub replica: String,
    calls: InFlight,
}

impl Sink {
    pub fn new(log: OutputLog, app: String, function: String, replica: String) -> Self {
        Self { log, app, function, replica, calls: Default::default() }
    }

    /// A sink for a process that runs only `call` (exec mode): all its lines are that call's.
    pub fn only(&self, call: Option<&str>) -> Sink {
        let calls = call.map(|c| vec![(c.to_string(), None)]).unwrap_or_default();
        Sink { calls: Arc::new(Mutex::new(calls)), ..self.clone() }
    }

    /// An input runs on this sink's process until the guard is dropped (also when its task is
    /// aborted): durable call `call`, or a synchronous input (`None`), whose lines are no
    /// call's. A call's lines read after its end are its own for [`LATE_LINES`] more, or until
    /// the next input starts.
    pub fn running(&self, call: Option<&str>) -> Running {
        let mut calls = self.calls.lock().expect("calls lock");
        calls.retain(|(_, ended)| ended.is_none());
        if let Some(call) = call {
            calls.push((call.to_string(), None));
        }
        Running { calls: self.calls.clone(), call: call.map(str::to_string) }
    }

    /// Keeps a chunk of the process's stderr, attributed to the calls running now.
    pub fn stderr(&self, chunk: &[u8]) {
        let calls: Vec<String> = {
            let mut calls = self.calls.lock().expect("calls lock");
            calls.retain(|(_, ended)| ended.is_none_or(|t| t.elapsed() < LATE_LINES));
            calls.iter().map(|(id, _)| id.clone()).collect()
        };
        self.log.push(&self.app, &self.function, &self.replica, &calls, chunk);
    }
}

/// An input running on a worker process; see [`Sink::running`].
pub struct Running {
    calls: InFlight,
    call: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(call) = &self.call else { return };
        let mut calls = self.calls.lock().expect("calls lock");
        if let Some(c) = calls.iter_mut().find(|(id, ended)| id == call && ended.is_none()) {
            c.1 = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_per_function_bounded_and_tailed() {
        let log = OutputLog::default();
        let mut follow = log.subscribe();
        log.push("a", "f", "rp-1", &[], b"one\ntwo\n");
        log.push("a", "g", "rp-2", &[], b"other\n");
        assert_eq!(texts(log.lines("a", "f", None, None)), ["one", "two"]);
        assert_eq!(texts(log.lines("a", "f", None, Some(1))), ["two"]);
        assert_eq!(follow.try_recv().map(|l| l.text).ok().as_deref(), Some("one"));
        for i in 0..LINES_PER_FUNCTION + 5 {
            log.push("a", "f", "rp-1", &[], format!("{i}\n").as_bytes());
        }
        let kept = log.lines("a", "f", None, None);
        assert_eq!(kept.len(), LINES_PER_FUNCTION);
        assert_eq!(kept[0].text, "5");
        assert_eq!(texts(log.lines("a", "g", None, None)), ["other"]);
    }

    fn texts(lines: Vec<Line>) -> Vec<String> {
        lines.into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn lines_go_to_the_calls_running_and_to_those_just_ended() {
        let log = OutputLog::default();
        let worker = Sink::new(log.clone(), "a".into(), "f".into(), "rp-1".into());
        worker.stderr(b"starting\n");
        let one = worker.running(Some("call-1"));
        worker.stderr(b"one alone\n");
        let two = worker.running(Some("call-2"));
        worker.stderr(b"both\n");
        drop(one);
        worker.stderr(b"late line of call-1\n");
        std::thread::sleep(LATE_LINES);
        worker.stderr(b"two alone\n");
        drop(two);
        let four = worker.running(Some("call-4"));
        worker.stderr(b"four, started right after two ended\n");
        drop(four);
        let _sync = worker.running(None);
        worker.stderr(b"a synchronous input right after four\n");
        let exec = worker.only(Some("call-3"));
        exec.stderr(b"three\n");
        worker.only(None).stderr(b"a sync input\n");
        assert_eq!(texts(log.lines("a", "f", Some("call-1"), None)), ["one alone", "both", "late line of call-1"]);
        assert_eq!(texts(log.lines("a", "f", Some("call-2"), None)), ["both", "late line of call-1", "two alone"]);
        assert_eq!(texts(log.lines("a", "f", Some("call-3"), None)), ["three"]);
        assert_eq!(texts(log.lines("a", "f", Some("call-1"), Some(1))), ["late line of call-1"]);
        assert_eq!(texts(log.lines("a", "f", Some("call-4"), None)), ["four, started right after two ended"]);
        assert_eq!(log.lines("a", "f", None, None).len(), 9);
        assert!(log.lines("a", "f", Some("call-9"), None).is_empty());
    }
}
