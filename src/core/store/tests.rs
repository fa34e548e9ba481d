//! Core rules over the in-memory store: what every backend must do the same.

use super::*;
use crate::bus::Bus;
use crate::config::Config;
use crate::core::events::Audience;
use crate::core::model::{Caller, Platform};
use crate::core::Core;
use std::sync::Arc;

/// Remembers every published event, in the order it was published.
#[derive(Default)]
struct RecordingSink(Mutex<Vec<CommittedEvent>>);

impl EventSink for RecordingSink {
    fn publish(&self, events: &[CommittedEvent]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
    }
}

impl RecordingSink {
    fn seqs(&self) -> Vec<i64> {
        let events = self.0.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().map(|e| e.seq).collect()
    }
}

async fn core_in_memory() -> (Arc<Core>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let store = crate::store::open_in_memory(sink.clone())
        .await
        .expect("in-memory store opens");
    let cfg = Config::load(None).expect("default config loads");
    let reasoner = crate::reason::Reasoner::new(
        crate::reason::ReasonConfig::default(),
        store.clone() as Arc<dyn ReasonCache>,
    )
    .expect("unconfigured reasoner");
    let catalog = crate::catalog::Catalog::embedded().expect("embedded catalog");
    let core = Core::new(
        store,
        Arc::new(Bus::new()),
        Arc::new(reasoner),
        Arc::new(catalog),
        cfg.tasks.clone(),
        cfg.limits.clone(),
        cfg.polls.clone(),
    );
    (core, sink)
}

fn agent(name: &str) -> Caller {
    Caller {
        identity: name.to_string(),
        role: Role::Agent,
        capabilities: vec![],
        platform: Platform::Ws,
    }
}

fn new_task(title: &str) -> NewTask {
    NewTask {
        title: title.to_string(),
        body: String::new(),
        priority: 0,
        requires: vec![],
        tags: vec![],
        max_attempts: None,
    }
}

#[test]
fn claim_outcome_is_named_after_the_event_that_ended_it() {
    let done = NewEvent {
        kind: EventKind::TaskCompleted,
        data: serde_json::json!({}),
        audience: Audience::default(),
    };
    assert_eq!(claim_outcome(&[done], TaskState::Done), "done");
    assert_eq!(claim_outcome(&[], TaskState::Open), "open");
}

#[test]
fn commit_log_finds_events_committed_by_others() {
    let log = CommitLog::new(
        Arc::new(RecordingSink::default()),
        10,
        TaskCounts::default(),
    );
    assert_eq!(log.gap_before(11), None);
    assert_eq!(log.gap_before(14), Some(13));
}

#[tokio::test]
async fn a_claimed_and_completed_task_moves_counts_and_publishes_in_seq_order() {
    let (core, sink) = core_in_memory().await;
    let alice = agent("alice");
    let task = core
        .create_task(&alice, new_task("t"))
        .await
        .expect("created");
    let claimed = core
        .claim_task(&alice, None, None)
        .await
        .expect("claim")
        .expect("a task to claim");
    assert_eq!(claimed.id, task.id);
    assert_eq!(core.task_counts().get(TaskState::Claimed), 1);
    core.complete_task(&alice, task.id, None)
        .await
        .expect("complete");
    let counts = core.task_counts();
    assert_eq!(counts.get(TaskState::Done), 1);
    assert_eq!(counts.get(TaskState::Claimed), 0);
    assert_eq!(sink.seqs(), vec![1, 2, 3]);
    let tally = core.store.run_tally("alice").await.expect("tally");
    assert_eq!(tally.counts.claims, 1);
    assert_eq!(tally.counts.completions, 1);
}

#[tokio::test]
async fn concurrent_claims_of_one_task_give_it_to_exactly_one_and_keep_the_rest() {
    let (core, sink) = core_in_memory().await;
    let task = core
        .create_task(&agent("boss"), new_task("contested"))
        .await
        .expect("created");
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..32 {
        let core = core.clone();
        claims.spawn(async move {
            let me = agent(&format!("a{i}"));
            let other = core.create_task(&me, new_task(&format!("own {i}"))).await;
            let claim = core.claim_task(&me, Some(task.id), None).await;
            (other.is_ok(), claim.is_ok())
        });
    }
    let mut won = 0;
    while let Some(res) = claims.join_next().await {
        let (created, claimed) = res.expect("claim task ran");
        assert!(
            created,
            "a rejected neighbour must not roll back this create"
        );
        won += claimed as usize;
    }
    assert_eq!(won, 1);
    assert_eq!(core.task_counts().get(TaskState::Open), 32);
    let seqs = sink.seqs();
    assert_eq!(seqs.len(), 1 + 32 + 1, "created, 32 own creates, one claim");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test]
async fn stored_acks_never_move_back() {
    let (core, _sink) = core_in_memory().await;
    core.add_agent("bob", Role::Agent, vec![])
        .await
        .expect("added");
    core.store
        .record_acks(vec![("bob".into(), 7), ("nobody".into(), 3)])
        .await
        .expect("acks");
    core.store
        .record_acks(vec![("bob".into(), 5)])
        .await
        .expect("acks");
    let bob = core.store.agent("bob").await.expect("read").expect("bob");
    assert_eq!(bob.acked_seq, 7);
}

#[tokio::test]
async fn event_pages_keep_only_what_the_agent_gets() {
    let (core, _sink) = core_in_memory().await;
    let boss = agent("boss");
    core.create_task(&boss, new_task("one"))
        .await
        .expect("created");
    core.broadcast(&boss, "hello".into(), None)
        .await
        .expect("broadcast");
    let page = core.events_for("carol", &[], 0, 10).await.expect("page");
    assert_eq!(page.scanned_to, Some(2));
    let kinds: Vec<_> = page.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::TaskCreated, EventKind::Broadcast]);
}

fn alert_events() -> crate::core::alerts::AlertEvents {
    Box::new(|a| {
        vec![NewEvent {
            kind: EventKind::AlertRaised,
            data: serde_json::json!({ "alert": a }),
            audience: Audience::everyone(),
        }]
    })
}

#[tokio::test]
async fn an_alert_is_raised_once_repeated_after_its_interval_and_cleared_once() {
    let (core, sink) = core_in_memory().await;
    let f = crate::core::alerts::Finding {
        rule: "unserved",
        subject: "cobol".into(),
        message: "1 task open".into(),
    };
    let store = &core.store;
    let a = store
        .raise_alert(f.clone(), 60_000, alert_events())
        .await
        .unwrap()
        .expect("raised");
    assert_eq!((a.key.as_str(), a.repeats), ("unserved:cobol", 0));
    assert!(
        store
            .raise_alert(f.clone(), 60_000, alert_events())
            .await
            .unwrap()
            .is_none(),
        "not again within the repeat interval"
    );
    let again = store
        .raise_alert(f.clone(), 0, alert_events())
        .await
        .unwrap()
        .expect("repeated");
    assert_eq!((again.id, again.repeats), (a.id, 1));
    assert_eq!(store.active_alerts().await.unwrap(), vec![again]);
    let cleared = store
        .clear_alert(f.key(), alert_events())
        .await
        .unwrap()
        .expect("cleared");
    assert!(cleared.cleared_at.is_some());
    assert!(store
        .clear_alert(f.key(), alert_events())
        .await
        .unwrap()
        .is_none());
    assert!(store.active_alerts().await.unwrap().is_empty());
    assert_eq!(
        sink.seqs().len(),
        3,
        "raise, repeat and clear each commit one event"
    );
}
