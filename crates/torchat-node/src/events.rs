//! Events to subscribed control clients: one bounded queue per subscriber.
//!
//! The actor publishes a batch's events at once, so a burst (thousands of messages arriving
//! in one batch) must fit a subscriber's queue; a queue holds [`QUEUE`] events. A subscriber
//! that falls further behind misses events and is told so (`lagged` with the number missed)
//! before the next event it gets, then re-reads state. Events are shared (`Arc`), and a
//! queue holds only what its subscriber has not read yet: nothing is kept after a burst.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use torchat_api as api;

/// Events waiting for one subscriber.
pub(crate) const QUEUE: usize = 8192;

struct Sub {
    tx: mpsc::Sender<Arc<api::Event>>,
    /// Events dropped since the last one delivered.
    missed: u64,
}

/// The subscribers; cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Hub {
    subs: Arc<Mutex<Vec<Sub>>>,
}

impl Hub {
    /// A new subscriber's queue.
    pub fn subscribe(&self) -> mpsc::Receiver<Arc<api::Event>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().push(Sub { tx, missed: 0 });
        rx
    }

    /// Whether anyone listens (if not, events need not be built).
    pub fn has_subscribers(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Publishes an event to every subscriber; never waits. Returns how many subscribers
    /// there are.
    pub fn send(&self, ev: api::Event) -> usize {
        let mut subs = self.lock();
        if subs.is_empty() {
            return 0;
        }
        let ev = Arc::new(ev);
        subs.retain_mut(|s| {
            if s.missed > 0 {
                let lag = Arc::new(api::Event::Lagged { missed: s.missed });
                match s.tx.try_send(lag) {
                    Ok(()) => s.missed = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.missed += 1;
                        return true;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.missed += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        subs.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sub>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8) -> api::Event {
        api::Event::TorProgress {
            percent: n,
            summary: String::new(),
        }
    }

    #[test]
    fn a_burst_up_to_the_queue_size_is_delivered_whole() {
        let hub = Hub::default();
        let mut rx = hub.subscribe();
        for i in 0..QUEUE {
            hub.send(ev((i % 100) as u8));
        }
        for i in 0..QUEUE {
            assert_eq!(*rx.try_recv().unwrap(), ev((i % 100) as u8));
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_how_much_it_missed() {
        let hub = Hub::default();
        let mut rx = hub.subscribe();
        for _ in 0..QUEUE + 5 {
            hub.send(ev(1));
        }
        for _ in 0..QUEUE {
            rx.try_recv().unwrap();
        }
        hub.send(ev(2));
        assert_eq!(*rx.try_recv().unwrap(), api::Event::Lagged { missed: 5 });
        assert_eq!(*rx.try_recv().unwrap(), ev(2));
    }

    #[test]
    fn gone_subscribers_are_dropped() {
        let hub = Hub::default();
        let rx = hub.subscribe();
        assert!(hub.has_subscribers());
        drop(rx);
        hub.send(ev(1));
        assert!(!hub.has_subscribers());
    }
}
