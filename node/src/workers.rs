//! The node's background work, started by name and joined at shutdown.
//!
//! Every long-lived loop of a node (liveness probes, the reconcilers, the scheduler, the blob
//! keeper, the HTTP endpoint, …) is a *worker*: a future started through [`Workers::spawn`]
//! under a name, in a tracing span carrying that name. Shutdown is one call,
//! [`Workers::join`]: it flips the shared shutdown signal every worker watches, waits for all
//! of them under one deadline, and logs by name each worker that did not stop in time (it is
//! then aborted), so a loop that ignores the signal shows up in the log instead of hanging the
//! node.
//!
//! A worker started with [`Workers::spawn_critical`] returns a `Result`; its error ends the
//! node: [`Workers::failed`] yields it, and `server::run` returns it as the process's error
//! (so a refused join exits 1 with its message, from one place, instead of each worker calling
//! `process::exit`).

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{warn, Instrument};

/// The running workers of one node and the shutdown signal they watch.
pub struct Workers {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    shutdown_tx: watch::Sender<bool>,
    failed_tx: mpsc::UnboundedSender<anyhow::Error>,
    failed_rx: mpsc::UnboundedReceiver<anyhow::Error>,
}

impl Default for Workers {
    fn default() -> Self {
        let (shutdown_tx, _) = watch::channel(false);
        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        Self { tasks: Vec::new(), shutdown_tx, failed_tx, failed_rx }
    }
}

impl Workers {
    /// The signal to hand to a worker: it turns `true` when the node shuts down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Starts `work` as the worker `name`.
    pub fn spawn(&mut self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let span = tracing::info_span!("worker", name);
        self.tasks.push((name, tokio::spawn(work.instrument(span))));
    }

    /// Starts `work` as the worker `name`; an error it returns stops the node (see
    /// [`Workers::failed`]).
    pub fn spawn_critical(
        &mut self,
        name: &'static str,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let failed = self.failed_tx.clone();
        self.spawn(name, async move {
            if let Err(e) = work.await {
                let _ = failed.send(e.context(format!("{name} failed")));
            }
        });
    }

    /// The first error of a critical worker; pending until one fails.
    pub async fn failed(&mut self) -> anyhow::Error {
        match self.failed_rx.recv().await {
            Some(e) => e,
            // `self` holds a sender, so the channel never closes while it lives.
            None => std::future::pending().await,
        }
    }

    /// Signals shutdown and waits up to `deadline` for every worker to end. Returns the names
    /// of those that did not (each is logged and aborted).
    pub async fn join(self, deadline: Duration) -> Vec<&'static str> {
        let _ = self.shutdown_tx.send(true);
        let until = tokio::time::Instant::now() + deadline;
        let mut stuck = Vec::new();
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(until, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_panic() => warn!(worker = name, "worker panicked"),
                Ok(Err(_)) => {}
                Err(_) => {
                    warn!(worker = name, ?deadline, "worker did not stop in time; aborting it");
                    task.abort();
                    stuck.push(name);
                }
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_waits_for_workers_that_stop_and_names_those_that_do_not() {
        let mut workers = Workers::default();
        let mut polite = workers.shutdown();
        workers.spawn("polite", async move {
            let _ = polite.wait_for(|stop| *stop).await;
        });
        workers.spawn("deaf", std::future::pending());
        let started = tokio::time::Instant::now();
        let stuck = workers.join(Duration::from_millis(200)).await;
        assert_eq!(stuck, vec!["deaf"]);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_critical_worker_error_is_reported_with_its_name() {
        let mut workers = Workers::default();
        workers.spawn_critical("join", async { Err(anyhow::anyhow!("join refused")) });
        let error = tokio::time::timeout(Duration::from_secs(5), workers.failed()).await.unwrap();
        assert_eq!(format!("{error:#}"), "join failed: join refused");
    }
}
