//! Asking a running sync to stop: after the current page, with its checkpoint saved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A flag that a signal handler sets and the sync checks between pages and while it waits.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<(AtomicBool, Notify)>,
}

impl Stop {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the sync to stop.
    pub fn trigger(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Waits for `duration`, or less if a stop is asked for; returns whether it was.
    pub async fn sleep(&self, duration: Duration) -> bool {
        match self.unless_stopped(tokio::time::sleep(duration)).await {
            Some(()) => self.is_set(),
            None => true,
        }
    }

    /// Runs `work` unless a stop is asked for first: `None` when it was, and `work` is dropped
    /// where it stood.
    pub async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let notified = self.inner.1.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is checked, so a trigger in between is not missed.
        notified.as_mut().enable();
        if self.is_set() {
            return None;
        }
        tokio::select! {
            done = work => Some(done),
            _ = notified => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_cuts_a_wait_short() {
        let stop = Stop::new();
        let waiter = stop.clone();
        let task = tokio::spawn(async move { waiter.sleep(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("woke up")
            .expect("task");
        assert!(stopped);
        assert!(stop.sleep(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn a_stop_drops_the_work_it_cuts_short() {
        let stop = Stop::new();
        assert_eq!(stop.unless_stopped(async { 7 }).await, Some(7));
        let trigger = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            trigger.trigger();
        });
        let never = std::future::pending::<()>();
        let cut = tokio::time::timeout(Duration::from_secs(5), stop.unless_stopped(never)).await;
        assert_eq!(cut.expect("woke up"), None);
        assert_eq!(stop.unless_stopped(async { 7 }).await, None);
    }
}
