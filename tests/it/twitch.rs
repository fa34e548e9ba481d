//! The Twitch front door against a fake Twitch IRC server on loopback.

use crate::common::fake_twitch::{exclusive, FakeTwitch, Said};
use crate::common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use swarmbridge::config::{ChannelList, Config, Secret};

pub(crate) const CH: &str = "somechannel";
const BOT: &str = "swarmbot";

/// A server whose Twitch front door talks to `fake` in channel [`CH`].
pub(crate) async fn twitch_server(
    fake: &FakeTwitch,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let addr = fake.addr();
    TestServer::spawn_with(move |cfg| {
        cfg.twitch.username = BOT.into();
        cfg.twitch.oauth_token = Some(Secret::new("oauth:notarealtoken"));
        cfg.twitch.channels = ChannelList(vec![CH.into()]);
        cfg.twitch.server = Some(addr);
        cfg.twitch.cooldown_ms = 0;
        cfg.twitch.reconnect.base_ms = 100;
        cfg.twitch.reconnect.max_ms = 1_000;
        cfg.twitch.reconnect.min_interval_ms = 50;
        cfg.twitch.announce.batch_ms = 200;
        tweak(cfg);
    })
    .await
}

fn names_and_count(text: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut more = 0;
    for word in text.split(' ') {
        if let Some(n) = word.strip_prefix('@') {
            names.push(n.to_string());
        } else if let Some(n) = word.strip_prefix("(+").and_then(|w| w.strip_suffix(')')) {
            more = n.parse().unwrap_or(0);
        } else {
            break;
        }
    }
    let covered = names.len() + more;
    (names, covered)
}

fn busiest_window(said: &[Said], window: Duration) -> usize {
    said.iter()
        .map(|s| {
            said.iter()
                .filter(|x| x.at >= s.at && x.at < s.at + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn status_is_answered_with_live_counts_as_a_reply_to_the_viewers_message() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    agent.create_task(json!({"title": "build"})).await;
    agent.create_task(json!({"title": "test"})).await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "viewer1", "", "!status");
    let reply = fake.reply_to(&id).await;
    assert_eq!(reply.channel, CH);
    assert!(reply.text.starts_with("@viewer1 "), "{reply:?}");
    assert!(
        reply.text.contains("1 agent online") && reply.text.contains("2 open"),
        "{reply:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_burst_of_100_viewers_stays_within_the_outbound_limit_and_everyone_is_covered() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let window = Duration::from_millis(2_000);
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.outbound.messages = 4;
        c.twitch.outbound.window_ms = window.as_millis() as u64;
        c.twitch.announce.enabled = false;
    })
    .await;
    fake.wait_joined(CH).await;
    let viewers: Vec<String> = (0..100).map(|i| format!("viewer{i:03}")).collect();
    for (i, v) in viewers.iter().enumerate() {
        let text = if i % 2 == 0 { "!status" } else { "!tasks" };
        fake.say(CH, v, "subscriber/3", text);
    }
    fake.wait_for("every viewer covered", |f| {
        f.said()
            .iter()
            .map(|s| names_and_count(&s.text).1)
            .sum::<usize>()
            >= 100
    })
    .await;
    let said = fake.said();
    let mut named = HashSet::new();
    for s in &said {
        for n in names_and_count(&s.text).0 {
            assert!(viewers.contains(&n), "unknown name {n} in {s:?}");
            assert!(named.insert(n.clone()), "{n} named twice");
        }
    }
    assert!(
        said.len() <= 12,
        "{} lines for 100 viewers: {said:#?}",
        said.len()
    );
    // Measured where it arrives, allowing a little network jitter.
    let busiest = busiest_window(&said, window - Duration::from_millis(100));
    assert!(busiest <= 4, "{busiest} lines in one window: {said:#?}");
    srv.stop().await;
}

#[tokio::test]
async fn with_twitchs_real_limits_100_requests_send_at_most_20_lines_in_the_first_seconds() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    assert_eq!(srv.cfg.twitch.outbound.messages, 20);
    assert_eq!(srv.cfg.twitch.outbound.window_ms, 30_000);
    fake.wait_joined(CH).await;
    let start = Instant::now();
    for i in 0..100 {
        // distinct questions: nothing to coalesce
        fake.say(CH, &format!("v{i}"), "", &format!("!task {}", i + 1));
    }
    fake.wait_for("the first lines", |f| f.said().len() >= 5)
        .await;
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(start.elapsed())).await;
    let n = fake.said().len();
    assert!((5..=20).contains(&n), "{n} lines in the first 4 s");
    srv.stop().await;
}

#[tokio::test]
async fn as_moderator_the_bot_may_send_more_than_20_but_at_most_100() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(true).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    // let USERSTATE (moderator) arrive before the burst
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..150 {
        fake.say(CH, &format!("v{i}"), "", &format!("!task {}", i + 1));
    }
    fake.wait_for("more than 20 lines", |f| f.said().len() > 20)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = fake.said().len();
    assert!((21..=100).contains(&n), "{n} lines");
    srv.stop().await;
}

#[tokio::test]
async fn broadcast_by_a_viewer_is_refused_with_one_line() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |_| {}).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "someviewer", "subscriber/1", "!broadcast hello agents");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.contains("not allowed"), "{reply:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.said().len(), 1, "{:#?}", fake.said());
    assert!(agent
        .recv_within(Duration::from_millis(200))
        .await
        .is_none());
    srv.stop().await;
}

#[tokio::test]
async fn broadcast_by_a_moderator_reaches_websocket_agents() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |_| {}).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "themod", "moderator/1", "!broadcast deploy is done");
    let ev = agent.event("broadcast").await;
    assert_eq!(ev["data"]["text"], "deploy is done");
    assert_eq!(ev["data"]["from"], "twitch:themod");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.starts_with("@themod"), "{reply:?}");
    // and it is announced in chat
    fake.wait_for("the announcement", |f| {
        f.said()
            .iter()
            .any(|s| s.reply_to.is_none() && s.text.contains("deploy is done"))
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn hostile_inputs_never_make_the_bot_send_a_chat_command_or_a_long_line() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    // room for every answer at once; the limits have their own tests
    let mut srv = twitch_server(&fake, |c| c.twitch.outbound.messages = 60).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    for title in [
        "/ban everyone",
        ".timeout someone 600",
        "\u{0001}ACTION evil\u{0001}",
        "  /clear",
        "\u{200B}/mod me",
        &"ü".repeat(256),
    ] {
        agent
            .create_task(json!({"title": title, "body": "x".repeat(4000)}))
            .await;
    }
    fake.wait_joined(CH).await;
    let long = "y".repeat(1500);
    let inputs = [
        "!task 1".to_string(),
        "!task 2".into(),
        "!task 3".into(),
        "!task 4".into(),
        "!task 5".into(),
        "!task 6".into(),
        "!tasks".into(),
        "!task /ban x".into(),
        "!help /ban".into(),
        "!help .timeout".into(),
        format!("!help {long}"),
        "!tasks \u{0007}\u{0008}".into(),
        "!help 日本語テキスト🎉".into(),
        "!task 99999999999999999999999".into(),
    ];
    let mut ids = Vec::new();
    for (i, text) in inputs.iter().enumerate() {
        ids.push(fake.say(CH, &format!("v{i}"), "", text));
    }
    let id = fake.say(
        CH,
        "themod",
        "moderator/1",
        "!broadcast /ban everyone\u{0001}",
    );
    ids.push(id);
    fake.wait_for("a reply to every input", |f| {
        let said = f.said();
        ids.iter()
            .all(|id| said.iter().any(|s| s.reply_to.as_deref() == Some(id)))
    })
    .await;
    fake.wait_for("the broadcast announcement", |f| {
        f.said()
            .iter()
            .any(|s| s.reply_to.is_none() && s.text.contains("ban everyone"))
    })
    .await;
    for s in fake.said() {
        assert!(!s.text.starts_with(['/', '.']), "command sent: {s:?}");
        assert!(s.text.chars().count() <= 500, "too long: {s:?}");
        assert!(!s.text.chars().any(char::is_control), "control: {s:?}");
    }
    for raw in fake.sent() {
        assert!(!raw.raw.contains('\r') && !raw.raw.contains('\n'));
    }
    srv.stop().await;
}

#[tokio::test]
async fn reconnect_from_the_server_is_survived() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "viewer1", "", "!status");
    fake.reply_to(&id).await;
    fake.reconnect();
    fake.wait_for("a second connection that joined", |f| {
        f.sent()
            .iter()
            .any(|s| s.conn > 1 && s.raw.starts_with("JOIN"))
    })
    .await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "viewer2", "", "!agents");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.starts_with("@viewer2"), "{reply:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_hostile_colour_tag_is_blanked_and_the_bot_keeps_answering_on_the_same_connection() {
    // twitch-irc 6.1.3 panics slicing `#　000` by bytes (found by fuzzing);
    // the connection's line repair blanks the tag before it parses.
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    let hostile = fake.say_coloured(CH, "viewer1", "", "#\u{3000}000", "!agents");
    let id = fake.say(CH, "viewer2", "", "!status");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.starts_with("@viewer2 "), "{reply:?}");
    // Blanked, not dropped: the message itself was handled too.
    let first = fake.reply_to(&hostile).await;
    assert!(first.text.starts_with("@viewer1 "), "{first:?}");
    assert_eq!(fake.attempts(), 1, "the connection was not lost");
    let (status, ready) = crate::common::http_api::get(&srv.http_url(), "/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["twitch"], "up", "{ready}");
    srv.stop().await;
}

#[tokio::test]
async fn the_bots_own_lines_relayed_back_are_not_answered() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    fake.set_echo_own(true);
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    // a line from the bot's own login that looks like a command
    fake.say(CH, BOT, "", "!status");
    let id = fake.say(CH, "viewer1", "", "!help");
    fake.reply_to(&id).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.said().len(), 1, "{:#?}", fake.said());
    srv.stop().await;
}

#[tokio::test]
async fn a_refused_connection_backs_off() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    fake.set_refuse(true);
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.reconnect.base_ms = 200;
        c.twitch.reconnect.max_ms = 5_000;
        c.twitch.reconnect.min_interval_ms = 0;
    })
    .await;
    fake.wait_for("a first attempt", |f| f.attempts() >= 1)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = fake.attempts();
    // 0, 200, 400, 800 ms ...: about 4 in 2 s; without backoff, thousands
    assert!((2..=6).contains(&n), "{n} attempts in 2 s");
    // and once the server accepts again, the bot gets in and answers
    fake.set_refuse(false);
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "viewer1", "", "!status");
    fake.reply_to(&id).await;
    srv.stop().await;
}

#[tokio::test]
async fn task_events_are_announced_summarized_in_one_line() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.batch_ms = 500).await;
    fake.wait_joined(CH).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    for t in ["build", "test", "ship"] {
        agent.create_task(json!({"title": t})).await;
    }
    fake.wait_for("the summary", |f| {
        f.said()
            .iter()
            .any(|s| s.text.contains("3 tasks new: #1 build, #2 test, #3 ship"))
    })
    .await;
    assert_eq!(fake.said().len(), 1, "{:#?}", fake.said());
    srv.stop().await;
}

#[tokio::test]
async fn announcements_made_while_disconnected_go_out_after_the_reconnection() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.announce.batch_ms = 100;
        c.twitch.reconnect.base_ms = 1_000;
    })
    .await;
    fake.wait_joined(CH).await;
    let mut agent = srv.agent("worker-1", &[]).await;
    fake.set_refuse(true);
    fake.reconnect();
    fake.wait_for("the connection to drop", |f| f.live_connections() == 0)
        .await;
    agent.create_task(json!({"title": "while away"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.said().is_empty(), "{:#?}", fake.said());
    fake.set_refuse(false);
    fake.wait_for("the announcement after reconnecting", |f| {
        f.said().iter().any(|s| s.text.contains("while away"))
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn without_a_token_the_bot_joins_anonymously_and_only_reads() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.oauth_token = None).await;
    fake.wait_joined(CH).await;
    fake.say(CH, "viewer1", "", "!status");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.sent();
    assert!(
        sent.iter().any(|s| s.raw.starts_with("NICK justinfan")),
        "{sent:#?}"
    );
    assert!(!sent.iter().any(|s| s.raw.starts_with("PASS")), "{sent:#?}");
    assert!(fake.said().is_empty(), "{sent:#?}");
    srv.stop().await;
}

#[tokio::test]
async fn viewers_vote_with_a_number_and_the_result_is_announced_in_chat() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.announce.batch_ms = 100;
        c.twitch.cooldown_ms = 0;
    })
    .await;
    fake.wait_joined(CH).await;
    let mut op = srv.operator("op").await;
    let poll = op
        .ok(
            json!({"type":"poll.open","question":"Ship it?","options":["yes","no"],
                   "duration_s":600,"voters":"twitch"}),
            "poll",
        )
        .await;
    let id = poll["poll"]["id"].as_i64().unwrap();
    fake.wait_for("the poll to be announced", |f| {
        f.said()
            .iter()
            .any(|s| s.text.contains("poll #1 open: Ship it?"))
    })
    .await;
    fake.say(CH, "alice", "", "!vote 1");
    fake.say(CH, "bob", "", "!vote 1");
    fake.say(CH, "carol", "", "!vote 2");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let p = op.ok(json!({"type":"poll.get","poll_id":id}), "poll").await;
        if p["poll"]["total_votes"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "votes not counted: {p}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.wait_for("a vote confirmation", |f| {
        f.said().iter().any(|s| s.text.contains("vote counted"))
    })
    .await;
    let closed = op
        .ok(json!({"type":"poll.close","poll_id":id}), "poll")
        .await;
    assert_eq!(closed["poll"]["tally"], json!([2, 1]), "{closed}");
    fake.wait_for("the result in chat", |f| {
        f.said()
            .iter()
            .any(|s| s.text.contains("poll #1 closed") && s.text.contains("yes wins"))
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn ask_answers_in_one_line_of_at_most_450_characters_cut_at_a_word() {
    let _one = exclusive().await;
    let answer = "swarms coordinate through leases ".repeat(30);
    let backend = crate::common::fake_openai::FakeOpenAi::spawn(
        crate::common::fake_openai::Reply::text(&answer),
    )
    .await;
    let fake = FakeTwitch::spawn(false).await;
    let base = backend.base_url();
    let mut srv = twitch_server(&fake, move |c| {
        c.reasoning.base_url = Some(base);
        c.twitch.cooldown_ms = 0;
    })
    .await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "curious", "", "!ask how do swarms coordinate?");
    fake.wait_for("the answer", |f| {
        f.said()
            .iter()
            .any(|s| s.text.contains("swarms coordinate"))
    })
    .await;
    let said = fake.said();
    let line = said
        .iter()
        .find(|s| s.text.contains("swarms coordinate"))
        .unwrap();
    assert_eq!(line.reply_to.as_deref(), Some(id.as_str()), "{line:?}");
    let text = line.text.trim_end_matches('…');
    assert!(
        line.text.chars().count() <= 500,
        "{}",
        line.text.chars().count()
    );
    assert!(
        text.ends_with("swarms")
            || text.ends_with("coordinate")
            || text.ends_with("through")
            || text.ends_with("leases"),
        "{}",
        line.text
    );
    assert_eq!(backend.calls(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_burst_of_100_identical_status_asks_gets_one_line_carrying_the_answer() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    let start = Instant::now();
    for i in 0..100 {
        fake.say(CH, &format!("viewer{i:03}"), "", "!status");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the burst took {:?}",
        start.elapsed()
    );
    fake.wait_for("every viewer covered", |f| {
        f.said()
            .iter()
            .map(|s| names_and_count(&s.text).1)
            .sum::<usize>()
            >= 100
    })
    .await;
    // anything that would follow (a second line, an "answered above") has time to show
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let said = fake.said();
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].text.contains("online") && said[0].text.contains("open"),
        "the line does not carry the answer: {said:?}"
    );
    srv.stop().await;
}

/// The `/metrics` samples whose labels include every one of `labels`.
async fn metric_lines(srv: &TestServer, name: &str, labels: &[&str]) -> Vec<String> {
    let text = reqwest::get(srv.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .map(str::to_string)
        .collect()
}

fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn chat_votes_are_counted_in_metrics_as_poll_vote_commands() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| c.twitch.announce.enabled = false).await;
    fake.wait_joined(CH).await;
    let mut op = srv.operator("op").await;
    op.ok(
        json!({"type":"poll.open","question":"Ship?","options":["yes","no"],
               "duration_s":600,"voters":"twitch"}),
        "poll",
    )
    .await;
    let id = fake.say(CH, "alice", "", "!vote 1");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.contains("vote counted"), "{reply:?}");
    let lines = metric_lines(
        &srv,
        "swarmbridge_commands_total",
        &[
            r#"command="poll.vote""#,
            r#"platform="twitch""#,
            r#"outcome="ok""#,
        ],
    )
    .await;
    // the recorder is shared by this binary's tests: at least this one
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(sample_value(&lines[0]) >= 1.0, "{lines:?}");
    srv.stop().await;
}

#[tokio::test]
async fn twitch_rate_limit_refusals_are_counted_in_metrics() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.announce.enabled = false;
        c.limits.rates.insert(
            "requests".into(),
            swarmbridge::config::Rate {
                per_s: 0.01,
                burst: 1,
            },
        );
    })
    .await;
    fake.wait_joined(CH).await;
    fake.say(CH, "alice", "", "!task 1");
    let limited = fake.say(CH, "alice", "", "!task 2");
    let reply = fake.reply_to(&limited).await;
    assert!(reply.text.contains("slow down"), "{reply:?}");
    let lines = metric_lines(
        &srv,
        "swarmbridge_rate_limited_total",
        &[r#"platform="twitch""#, r#"class="requests""#],
    )
    .await;
    // the recorder is shared by this binary's tests: at least this one
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(sample_value(&lines[0]) >= 1.0, "{lines:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_is_reconnected_once_and_the_channel_rejoined() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    let mut srv = twitch_server(&fake, |c| {
        c.twitch.announce.enabled = false;
        c.twitch.reconnect.base_ms = 200;
        c.twitch.reconnect.min_interval_ms = 0;
    })
    .await;
    fake.wait_joined(CH).await;
    let first = fake.attempts();

    fake.drop_connections();
    fake.wait_for("a new connection that joined", |f| {
        f.sent()
            .iter()
            .any(|s| s.conn > first && s.raw.starts_with("JOIN"))
    })
    .await;
    fake.wait_joined(CH).await;
    let id = fake.say(CH, "viewer1", "", "!status");
    let reply = fake.reply_to(&id).await;
    assert!(reply.text.starts_with("@viewer1"), "{reply:?}");
    assert_eq!(fake.attempts(), first + 1, "one reconnection, no storm");
    srv.stop().await;
}
