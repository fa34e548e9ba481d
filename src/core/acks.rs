//! Acknowledgements: taken in memory at once (so a reconnect a moment later
//! already sees them) and written to the store in batches.

use dashmap::DashMap;

/// The newest acknowledged `seq` per agent that is not yet stored.
#[derive(Default)]
pub struct AckBook {
    pending: DashMap<String, i64>,
    seen: DashMap<String, i64>,
}

impl AckBook {
    /// Records an ack; never moves an agent's ack backwards.
    pub fn ack(&self, agent: &str, seq: i64) {
        let mut seen = self.seen.entry(agent.to_string()).or_insert(0);
        if seq > *seen {
            *seen = seq;
            self.pending.insert(agent.to_string(), seq);
        }
    }

    /// The newest ack seen in this process for `agent`, if any.
    pub fn latest(&self, agent: &str) -> Option<i64> {
        self.seen.get(agent).map(|v| *v)
    }

    /// Puts back an ack whose write failed, unless a newer one came meanwhile.
    pub fn requeue(&self, agent: &str, seq: i64) {
        self.pending.entry(agent.to_string()).or_insert(seq);
    }

    /// Takes the acks not yet stored.
    pub fn take_pending(&self) -> Vec<(String, i64)> {
        let keys: Vec<String> = self.pending.iter().map(|e| e.key().clone()).collect();
        keys.into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .collect()
    }
}
