//! The one shape of every periodic loop in the process (lease and poll
//! sweepers, the watcher of other processes' writes, the ack flusher,
//! metrics upkeep, rate-limit memory): run a step every period until
//! shutdown. Lives outside `server` so the core may use it.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `tick` every `period` until `stop` fires, the first time at once.
///
/// A tick that overruns its period delays the next one rather than
/// bunching missed ticks together; a tick in progress is finished before
/// `stop` is looked at again, so a step is never cut off halfway. What a
/// step does with its own errors (log and carry on) is up to `tick`.
pub async fn every<F, Fut>(period: Duration, stop: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => tick().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::every;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn ticks_repeatedly_and_stops_when_cancelled() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = ticks.clone();
        let task = tokio::spawn(every(Duration::from_millis(5), stop.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }));
        let (reached, mut notify) = (
            ticks.clone(),
            tokio::time::interval(Duration::from_millis(1)),
        );
        tokio::time::timeout(Duration::from_secs(5), async {
            while reached.load(Ordering::SeqCst) < 3 {
                notify.tick().await;
            }
        })
        .await
        .expect("three ticks within 5 s");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the loop ends once stop fires")
            .expect("the loop does not panic");
        let after_stop = ticks.load(Ordering::SeqCst);
        tokio::task::yield_now().await;
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            after_stop,
            "no tick after stop"
        );
    }
}
