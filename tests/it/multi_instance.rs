//! Several instances on one PostgreSQL database, as a scaled-out
//! deployment runs them: claims never collide, messages and broadcasts
//! cross instances, agents may reconnect anywhere, and claims of a killed
//! instance come back. Skipped (with a line saying so) without
//! `SWARMBRIDGE_TEST_PG`.

use crate::common::fake_twitch::{exclusive, FakeTwitch};
use crate::common::{pg_or_skip, Backend, Client, TestServer, WAIT};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use swarmbridge::config::{ChannelList, Config, Rate, Secret};
use swarmbridge::core::model::{Role, TaskState};

fn generous(cfg: &mut Config) {
    cfg.limits.exempt_roles = vec![Role::Admin];
    cfg.limits.max_claims = 1000;
    for class in ["requests", "broadcast", "messages"] {
        cfg.limits.rates.insert(
            class.into(),
            Rate {
                per_s: 100_000.0,
                burst: 100_000,
            },
        );
    }
}

/// `n` instances on one fresh database; the first owns (and drops) it.
async fn cluster(n: usize, tweak: impl FnOnce(&mut Config)) -> Vec<TestServer> {
    let first = TestServer::spawn_on(Backend::Postgres, tweak).await;
    let mut all = Vec::with_capacity(n);
    for _ in 1..n {
        let peer = TestServer::spawn_peer(&first, |_| {}).await;
        all.push(peer);
    }
    all.insert(0, first);
    all
}

/// Waits (bounded) until `agent`'s message event with `text` arrives.
async fn message_with_text(c: &mut Client, text: &str) -> serde_json::Value {
    loop {
        let ev = c.event("message").await;
        if ev["data"]["text"] == text {
            return ev;
        }
    }
}

async fn claim_everything_exactly_once(instances: usize) {
    const TASKS: usize = 2000;
    const AGENTS: usize = 50;
    let servers = cluster(instances, generous).await;
    let mut creator = servers[0].admin("creator").await;
    let mut created = HashSet::new();
    for i in 0..TASKS {
        let t = creator.create_task(json!({"title": format!("t{i}")})).await;
        created.insert(t["id"].as_i64().expect("task id"));
    }
    drop(creator);
    assert_eq!(created.len(), TASKS);

    let mut set = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        let srv = &servers[i % instances];
        let mut c = srv.agent(&format!("worker-{i}"), &[]).await;
        set.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let r = c.ok(json!({"type":"task.claim"}), "task").await;
                if r["task"].is_null() {
                    return mine;
                }
                assert_eq!(r["task"]["assignee"], format!("worker-{i}"), "{r}");
                let id = r["task"]["id"].as_i64().expect("task id");
                let done = c
                    .ok(json!({"type":"task.complete","task_id":id}), "task")
                    .await;
                assert_eq!(done["task"]["state"], "done", "{done}");
                mine.push(id);
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = set.join_next().await {
        claimed.extend(r.expect("worker finished"));
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        unique.len(),
        "{} claims but {} distinct tasks: a task was claimed twice",
        claimed.len(),
        unique.len()
    );
    assert_eq!(unique, created, "every task is claimed exactly once");
    for srv in &servers {
        // every instance's status counts what the others did
        let deadline = Instant::now() + WAIT;
        loop {
            let counts = srv.running.as_ref().expect("running").core.task_counts();
            if counts.0[TaskState::Done.index()] == TASKS as i64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "counts never settled: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_on_two_instances_claim_2000_tasks_each_exactly_once() {
    if pg_or_skip("fifty_agents_on_two_instances_claim_2000_tasks_each_exactly_once").is_none() {
        return;
    }
    claim_everything_exactly_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_on_three_instances_claim_2000_tasks_each_exactly_once() {
    if pg_or_skip("fifty_agents_on_three_instances_claim_2000_tasks_each_exactly_once").is_none() {
        return;
    }
    claim_everything_exactly_once(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_instance_reaches_an_agent_on_another_within_100_ms() {
    if pg_or_skip("a_message_sent_through_one_instance_reaches_an_agent_on_another").is_none() {
        return;
    }
    let servers = cluster(2, generous).await;
    let mut alice = servers[0].agent("alice", &[]).await;
    let mut bob = servers[1].agent("bob", &[]).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let text = format!("hello {i}");
        let sent = Instant::now();
        alice
            .ok(json!({"type":"msg.send","to":"bob","text":text}), "ok")
            .await;
        let ev = message_with_text(&mut bob, &text).await;
        latencies.push(sent.elapsed());
        assert_eq!(ev["data"]["from"], "alice", "{ev}");
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    eprintln!(
        "cross-instance message latency: p50 {p50:?}, max {:?}",
        latencies[latencies.len() - 1]
    );
    assert!(
        p50 < Duration::from_millis(100),
        "median cross-instance latency {p50:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_agents_on_every_instance() {
    if pg_or_skip("a_broadcast_reaches_agents_on_every_instance").is_none() {
        return;
    }
    let servers = cluster(3, generous).await;
    let mut sender = servers[0].operator("ops").await;
    let mut listeners = Vec::new();
    for (i, srv) in servers.iter().enumerate() {
        listeners.push(srv.agent(&format!("listener-{i}"), &[]).await);
    }
    sender
        .ok(json!({"type":"broadcast","text":"to everyone"}), "ok")
        .await;
    for (i, l) in listeners.iter_mut().enumerate() {
        let ev = l.event("broadcast").await;
        assert_eq!(ev["data"]["text"], "to everyone", "instance {i}: {ev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reconnecting_to_another_instance_gets_what_it_did_not_acknowledge() {
    if pg_or_skip("an_agent_reconnecting_to_another_instance").is_none() {
        return;
    }
    let servers = cluster(2, generous).await;
    let mut alice = servers[0].agent("alice", &[]).await;
    let token = servers[0].add_agent("bob", Role::Agent, &[]).await;
    let mut bob = Client::hello(&servers[0].ws_url(), &token, json!({})).await;
    for text in ["m1", "m2"] {
        alice
            .ok(json!({"type":"msg.send","to":"bob","text":text}), "ok")
            .await;
    }
    let m1 = message_with_text(&mut bob, "m1").await;
    let m2 = message_with_text(&mut bob, "m2").await;
    bob.send(json!({"type":"ack","seq":m1["seq"]})).await;
    // the ack reaches the database on the first instance's next flush
    let core_b = servers[1].running.as_ref().expect("running").core.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = core_b.store.agent("bob").await.expect("read agent");
        if stored.is_some_and(|a| a.acked_seq >= m1["seq"].as_i64().unwrap_or(0)) {
            break;
        }
        assert!(Instant::now() < deadline, "the ack was never stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(bob);
    let mut bob = Client::hello(&servers[1].ws_url(), &token, json!({})).await;
    let again = bob.event("message").await;
    assert_eq!(again["seq"], m2["seq"], "m1 was acknowledged: {again}");
    // and live events keep coming on the new instance, seq still increasing
    alice
        .ok(json!({"type":"msg.send","to":"bob","text":"m3"}), "ok")
        .await;
    let m3 = message_with_text(&mut bob, "m3").await;
    assert!(m3["seq"].as_i64() > m2["seq"].as_i64(), "{m3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_a_killed_instance_expire_and_are_claimed_again() {
    if pg_or_skip("claims_of_a_killed_instance_expire_and_are_claimed_again").is_none() {
        return;
    }
    let mut servers = cluster(2, generous).await;
    let mut creator = servers[1].admin("creator").await;
    let mut created = HashSet::new();
    for i in 0..5 {
        let t = creator.create_task(json!({"title": format!("t{i}")})).await;
        created.insert(t["id"].as_i64().expect("task id"));
    }
    let mut doomed = servers[0].agent("doomed", &[]).await;
    for _ in 0..5 {
        let r = doomed
            .ok(json!({"type":"task.claim","lease_s":1}), "task")
            .await;
        assert_eq!(r["task"]["state"], "claimed", "{r}");
    }
    // the instance dies with the claims held; the other sweeps them back
    servers[0].stop().await;
    drop(doomed);
    let mut rescuer = servers[1].agent("rescuer", &[]).await;
    let mut reclaimed = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while reclaimed.len() < created.len() {
        assert!(
            Instant::now() < deadline,
            "only {reclaimed:?} came back of {created:?}"
        );
        let r = rescuer.ok(json!({"type":"task.claim"}), "task").await;
        if r["task"].is_null() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(r["task"]["attempts"], 2, "{r}");
        reclaimed.insert(r["task"]["id"].as_i64().expect("task id"));
    }
    assert_eq!(reclaimed, created, "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_instance_that_owns_twitch_moves_the_login_to_another_within_15_s() {
    if pg_or_skip("stopping_the_instance_that_owns_twitch_moves_the_login").is_none() {
        return;
    }
    let _one_twitch_client = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let addr = fake.addr();
    let twitch_on = move |cfg: &mut Config| {
        generous(cfg);
        cfg.twitch.username = "swarmbot".into();
        cfg.twitch.oauth_token = Some(Secret::new("oauth:notarealtoken"));
        cfg.twitch.channels = ChannelList(vec!["somechannel".into()]);
        cfg.twitch.server = Some(addr);
        cfg.twitch.cooldown_ms = 0;
        cfg.twitch.reconnect.base_ms = 100;
        cfg.twitch.reconnect.max_ms = 1_000;
        // a new owner stays quiet for one window after a take-over
        cfg.twitch.outbound.window_ms = 1_000;
    };
    // the first instance is alone when it starts, so it owns the login
    let mut owner = TestServer::spawn_on(Backend::Postgres, twitch_on).await;
    fake.wait_joined("somechannel").await;
    let mut standby = TestServer::spawn_peer(&owner, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.live_connections(),
        1,
        "the standby must not log in too"
    );
    let logins = fake.attempts();

    let stopped = Instant::now();
    owner.stop().await;
    let deadline = stopped + Duration::from_secs(15);
    while !(fake.attempts() > logins && fake.live_connections() == 1) {
        assert!(
            Instant::now() < deadline,
            "no instance took the Twitch login over within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.wait_joined("somechannel").await;
    eprintln!("Twitch login moved in {:?}", stopped.elapsed());
    // the standby answers viewers now
    let msg = fake.say("somechannel", "viewer", "", "!status");
    let reply = fake.reply_to(&msg).await;
    assert!(!reply.text.is_empty(), "{reply:?}");
    standby.stop().await;
}

/// Claims (each with its completion) per second by 100 agents spread over
/// `instances`, printed; run on a release build:
/// `SWARMBRIDGE_TEST_PG=... cargo test --release --test multi_instance -- --ignored --nocapture`.
async fn measure_claims_per_second(instances: usize, tasks: usize) {
    const AGENTS: usize = 100;
    let servers = cluster(instances, |cfg| {
        generous(cfg);
        cfg.limits.max_claims = 10;
    })
    .await;
    let core = servers[0].running.as_ref().expect("running").core.clone();
    let cli = swarmbridge::core::model::Caller {
        identity: "cli:measure".into(),
        role: Role::Admin,
        capabilities: vec![],
        platform: swarmbridge::core::model::Platform::Cli,
    };
    let mut creating = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let core = core.clone();
        let cli = cli.clone();
        creating.spawn(async move {
            for i in (chunk..tasks).step_by(16) {
                let new = swarmbridge::core::model::NewTask {
                    title: format!("task {i}"),
                    ..Default::default()
                };
                core.create_task(&cli, new).await.expect("task created");
            }
        });
    }
    while let Some(r) = creating.join_next().await {
        r.expect("creator finished");
    }
    let mut clients = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        clients.push(servers[i % instances].agent(&format!("w{i}"), &[]).await);
    }
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut c in clients {
        set.spawn(async move {
            let mut n = 0usize;
            loop {
                let r = c.ok(json!({"type":"task.claim"}), "task").await;
                let Some(id) = r["task"]["id"].as_i64() else {
                    return n;
                };
                c.ok(json!({"type":"task.complete","task_id":id}), "task")
                    .await;
                n += 1;
            }
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        done += r.expect("agent finished");
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done, tasks, "every task claimed and completed once");
    println!(
        "postgres claims: {instances} instance(s), {AGENTS} agents claimed and completed {done} \
         tasks in {secs:.2} s: {:.0} claims/s (each with its completion)",
        done as f64 / secs
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run on a release build with --ignored --nocapture"]
async fn measure_claims_per_second_on_one_instance() {
    if pg_or_skip("measure_claims_per_second_on_one_instance").is_none() {
        return;
    }
    measure_claims_per_second(1, 20_000).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run on a release build with --ignored --nocapture"]
async fn measure_claims_per_second_on_two_instances() {
    if pg_or_skip("measure_claims_per_second_on_two_instances").is_none() {
        return;
    }
    measure_claims_per_second(2, 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_due_closes_once_with_every_instance_sweeping() {
    if pg_or_skip("a_poll_due_closes_once_with_every_instance_sweeping").is_none() {
        return;
    }
    let servers = cluster(3, |cfg| {
        generous(cfg);
        cfg.polls.min_duration_s = 1;
        cfg.polls.sweep_interval_ms = 20;
    })
    .await;
    let mut voters = Vec::new();
    for (i, srv) in servers.iter().enumerate() {
        voters.push(srv.agent(&format!("voter-{i}"), &[]).await);
    }
    let mut op = servers[0].operator("pollster").await;
    let poll = op
        .ok(
            json!({"type":"poll.open","question":"ship?","options":["yes","no"],"duration_s":1}),
            "poll",
        )
        .await["poll"]
        .clone();
    for (i, v) in voters.iter_mut().enumerate() {
        let closed = v.event("poll.closed").await;
        assert_eq!(
            closed["data"]["poll"]["id"], poll["id"],
            "instance {i}: {closed}"
        );
        // every instance keeps sweeping; a second close would arrive now
        while let Some(f) = v.recv_within(Duration::from_millis(300)).await {
            assert!(
                !(f["type"] == "event" && f["kind"] == "poll.closed"),
                "instance {i} saw the poll close twice: {f}"
            );
        }
    }
    let core = servers[2].running.as_ref().expect("running").core.clone();
    let closes = core
        .store
        .recent_events(1000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind.as_str() == "poll.closed")
        .count();
    assert_eq!(closes, 1, "one poll.closed event in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_missed_notifications_recounts_tasks_when_it_catches_up() {
    let Some(admin) = pg_or_skip("an_instance_that_missed_notifications_recounts_tasks") else {
        return;
    };
    let servers = cluster(2, generous).await;
    let watcher = servers[1].running.as_ref().expect("running").core.clone();
    // cut every LISTEN session of this database: notifications sent now are lost
    let name = servers[0]
        .cfg
        .database
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let admin_pool = sqlx::PgPool::connect(&admin).await.expect("admin connects");
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&name)
    .fetch_all(&admin_pool)
    .await
    .expect("terminate listeners");
    admin_pool.close().await;
    assert!(!cut.is_empty(), "no LISTEN session found to cut");

    let mut worker = servers[0].operator("worker").await;
    for i in 0..5 {
        worker.create_task(json!({"title": format!("t{i}")})).await;
    }
    for _ in 0..2 {
        worker.ok(json!({"type":"task.claim"}), "task").await;
    }
    let r = worker.ok(json!({"type":"task.claim"}), "task").await;
    worker
        .ok(
            json!({"type":"task.complete","task_id":r["task"]["id"]}),
            "task",
        )
        .await;
    let want = servers[0]
        .running
        .as_ref()
        .expect("running")
        .core
        .task_counts();
    assert_eq!(
        (
            want.0[TaskState::Open.index()],
            want.0[TaskState::Claimed.index()],
            want.0[TaskState::Done.index()]
        ),
        (2, 2, 1),
        "{want:?}"
    );
    let deadline = Instant::now() + WAIT;
    while watcher.task_counts() != want {
        assert!(
            Instant::now() < deadline,
            "the other instance counts {:?}, the database {want:?}",
            watcher.task_counts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
