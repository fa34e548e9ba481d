//! Polls over the agent WebSocket and the HTTP API: opening, voting,
//! closing by hand and by time, weights, durability.

use crate::common::http_api;
use crate::common::*;
use serde_json::{json, Value};
use swarmbridge::core::model::Role;

/// Opens a poll as `op` and returns the `poll` object of the reply.
async fn open_poll(op: &mut Client, fields: Value) -> Value {
    let mut frame = json!({
        "type": "poll.open",
        "question": "Which release train?",
        "options": ["monday", "wednesday", "friday"],
        "duration_s": 600,
    });
    if let (Some(f), Some(e)) = (frame.as_object_mut(), fields.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    op.ok(frame, "poll").await["poll"].clone()
}

async fn vote(c: &mut Client, poll_id: &Value, option: i64) {
    c.ok(
        json!({"type":"poll.vote","poll_id":poll_id,"option":option}),
        "ok",
    )
    .await;
}

async fn get_poll(c: &mut Client, poll_id: &Value) -> Value {
    c.ok(json!({"type":"poll.get","poll_id":poll_id}), "poll")
        .await["poll"]
        .clone()
}

#[tokio::test]
async fn operator_opens_a_poll_agents_vote_and_close_reports_the_final_tally() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut b = srv.agent("b", &[]).await;
    let mut op = srv.operator("op").await;
    let poll = open_poll(&mut op, json!({})).await;
    assert_eq!(poll["state"], "open");
    assert_eq!(poll["tally"], json!([0, 0, 0]));
    assert_eq!(poll["voters"], "all");
    assert_eq!(poll["created_by"], "op");
    assert_eq!(poll["options"], json!(["monday", "wednesday", "friday"]));
    assert!(poll["closes_at"].as_str().unwrap().ends_with('Z'));
    let id = poll["id"].clone();

    let opened = a.event("poll.opened").await;
    assert_eq!(opened["data"]["poll"]["id"], id);
    assert_eq!(opened["data"]["poll"]["question"], "Which release train?");

    vote(&mut a, &id, 3).await;
    vote(&mut b, &id, 3).await;
    vote(&mut op, &id, 1).await;
    let closed = op
        .ok(json!({"type":"poll.close","poll_id":id}), "poll")
        .await;
    assert_eq!(closed["poll"]["state"], "closed");
    assert_eq!(closed["poll"]["tally"], json!([1, 0, 2]));
    assert_eq!(closed["poll"]["total_votes"], 3);

    let ev = b.event("poll.closed").await;
    assert_eq!(ev["data"]["poll"]["tally"], json!([1, 0, 2]));
    assert_eq!(ev["data"]["poll"]["state"], "closed");
}

#[tokio::test]
async fn a_later_vote_by_the_same_voter_replaces_the_earlier_one() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    vote(&mut a, &id, 1).await;
    vote(&mut a, &id, 2).await;
    let p = get_poll(&mut a, &id).await;
    assert_eq!(p["tally"], json!([0, 1, 0]));
    assert_eq!(p["total_votes"], 1);
}

#[tokio::test]
async fn a_vote_after_the_poll_closed_is_a_conflict() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    op.ok(json!({"type":"poll.close","poll_id":id}), "poll")
        .await;
    a.err(
        json!({"type":"poll.vote","poll_id":id,"option":1}),
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn closing_a_closed_poll_is_a_conflict() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    op.ok(json!({"type":"poll.close","poll_id":id}), "poll")
        .await;
    op.err(json!({"type":"poll.close","poll_id":id}), "conflict")
        .await;
}

#[tokio::test]
async fn option_zero_and_an_option_past_the_last_are_bad_requests() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    for option in [0, 4, -1] {
        a.err(
            json!({"type":"poll.vote","poll_id":id,"option":option}),
            "bad_request",
        )
        .await;
    }
    assert_eq!(get_poll(&mut a, &id).await["total_votes"], 0);
}

#[tokio::test]
async fn an_agent_without_the_operator_role_cannot_open_or_close_a_poll() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let e = a
        .err(
            json!({"type":"poll.open","question":"q?","options":["x","y"],"duration_s":60}),
            "forbidden",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("operator"), "{e}");
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    a.err(json!({"type":"poll.close","poll_id":id}), "forbidden")
        .await;
}

#[tokio::test]
async fn agents_may_not_vote_in_a_discord_only_poll_and_are_not_told_of_it() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("a", &[]).await;
    let mut op = srv.operator("op").await;
    let poll = open_poll(&mut op, json!({"voters": "discord"})).await;
    assert_eq!(poll["voters"], "discord");
    // the next event a gets is this broadcast, not a poll.opened
    op.ok(json!({"type":"broadcast","text":"marker"}), "ok")
        .await;
    let next = a.recv().await;
    assert_eq!(next["kind"], "broadcast", "{next}");
    a.err(
        json!({"type":"poll.vote","poll_id":poll["id"],"option":1}),
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn equal_counts_are_reported_as_a_tie_in_the_tally() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({"options": ["red", "blue"]})).await["id"].clone();
    for (name, option) in [("a", 1), ("b", 2), ("c", 1), ("d", 2)] {
        let mut c = srv.agent(name, &[]).await;
        vote(&mut c, &id, option).await;
    }
    let closed = op
        .ok(json!({"type":"poll.close","poll_id":id}), "poll")
        .await;
    assert_eq!(closed["poll"]["tally"], json!([2, 2]));
    assert_eq!(closed["poll"]["total_votes"], 4);
}

#[tokio::test]
async fn a_poll_closes_by_itself_at_closes_at_and_agents_get_poll_closed() {
    let srv = TestServer::spawn_with(|cfg| {
        cfg.polls.min_duration_s = 1;
        cfg.polls.sweep_interval_ms = 50;
    })
    .await;
    let mut a = srv.agent("a", &[]).await;
    let mut op = srv.operator("op").await;
    let id = open_poll(&mut op, json!({"duration_s": 1})).await["id"].clone();
    vote(&mut a, &id, 2).await;
    let ev = a.event("poll.closed").await;
    assert_eq!(ev["data"]["poll"]["id"], id);
    assert_eq!(ev["data"]["poll"]["state"], "closed");
    assert_eq!(ev["data"]["poll"]["tally"], json!([0, 1, 0]));
    assert_eq!(get_poll(&mut a, &id).await["state"], "closed");
    a.err(
        json!({"type":"poll.vote","poll_id":id,"option":1}),
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_duration_shorter_than_the_configured_minimum_is_a_bad_request() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    for d in [0, 9, 7 * 86_400 + 1] {
        let e = op
            .err(
                json!({"type":"poll.open","question":"q?","options":["x","y"],"duration_s":d}),
                "bad_request",
            )
            .await;
        assert!(e["message"].as_str().unwrap().contains("duration_s"), "{e}");
    }
}

#[tokio::test]
async fn question_and_options_out_of_bounds_are_bad_requests() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    let eleven: Vec<String> = (1..=11).map(|i| format!("o{i}")).collect();
    let cases = [
        json!({"question":"q?","options":["only one"]}),
        json!({"question":"q?","options":eleven}),
        json!({"question":"q?","options":["x","  "]}),
        json!({"question":"q?","options":["x","y".repeat(101)]}),
        json!({"question":"","options":["x","y"]}),
        json!({"question":"q".repeat(301),"options":["x","y"]}),
        json!({"question":"q?","options":["x","y"],"voters":"everyone"}),
    ];
    for mut c in cases {
        c["type"] = json!("poll.open");
        c["duration_s"] = json!(60);
        op.err(c, "bad_request").await;
    }
}

#[tokio::test]
async fn an_unknown_poll_is_not_found() {
    let srv = TestServer::spawn().await;
    let mut op = srv.operator("op").await;
    op.err(json!({"type":"poll.get","poll_id":999}), "not_found")
        .await;
    op.err(
        json!({"type":"poll.vote","poll_id":999,"option":1}),
        "not_found",
    )
    .await;
    op.err(json!({"type":"poll.close","poll_id":999}), "not_found")
        .await;
}

#[tokio::test]
async fn polls_and_votes_survive_a_restart() {
    let mut srv = TestServer::spawn().await;
    let a_token = srv.add_agent("a", Role::Agent, &[]).await;
    let op_token = srv.add_agent("op", Role::Operator, &[]).await;
    let mut op = Client::hello(&srv.ws_url(), &op_token, json!({})).await;
    let mut a = Client::hello(&srv.ws_url(), &a_token, json!({})).await;
    let id = open_poll(&mut op, json!({})).await["id"].clone();
    vote(&mut a, &id, 2).await;
    vote(&mut op, &id, 3).await;
    drop((a, op));

    srv.restart().await;
    let mut a = Client::hello(&srv.ws_url(), &a_token, json!({})).await;
    let p = get_poll(&mut a, &id).await;
    assert_eq!(p["state"], "open");
    assert_eq!(p["tally"], json!([0, 1, 1]));
    // the stored vote is still a's: voting again replaces it
    vote(&mut a, &id, 3).await;
    assert_eq!(get_poll(&mut a, &id).await["tally"], json!([0, 0, 2]));
}

#[tokio::test]
async fn votes_count_with_the_weight_configured_for_the_voters_role() {
    let srv = TestServer::spawn_with(|cfg| cfg.polls.weights.operator = 3).await;
    let mut op = srv.operator("op").await;
    let mut a = srv.agent("a", &[]).await;
    let mut b = srv.agent("b", &[]).await;
    let id = open_poll(&mut op, json!({"options": ["yes", "no"]})).await["id"].clone();
    vote(&mut op, &id, 1).await;
    vote(&mut a, &id, 2).await;
    vote(&mut b, &id, 2).await;
    let p = get_poll(&mut a, &id).await;
    assert_eq!(p["tally"], json!([3, 2]));
    assert_eq!(p["total_votes"], 3);
}

#[tokio::test]
async fn the_http_api_opens_votes_closes_and_shows_a_poll() {
    let srv = TestServer::spawn().await;
    let base = srv.http_url();
    let op = srv.add_agent("op", Role::Operator, &[]).await;
    let a = srv.add_agent("a", Role::Agent, &[]).await;
    let (st, v) = http_api::post(
        &base,
        "/api/polls",
        Some(&op),
        json!({"question":"Ship it?","options":["yes","no"],"duration_s":60,"voters":"agents"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("type").is_none(), "{v}");
    assert_eq!(v["poll"]["voters"], "agents");
    let id = v["poll"]["id"].as_i64().unwrap();

    let (st, v) = http_api::post(
        &base,
        &format!("/api/polls/{id}/vote"),
        Some(&a),
        json!({"option": 1}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"ok": true})));
    let (st, v) = http_api::get(&base, &format!("/api/polls/{id}"), Some(&a)).await;
    assert_eq!(st, 200);
    assert_eq!(v["poll"]["tally"], json!([1, 0]));

    let (st, v) = http_api::post(
        &base,
        &format!("/api/polls/{id}/close"),
        Some(&a),
        json!({}),
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(v["error"]["code"], "forbidden");
    let (st, v) = http_api::post(
        &base,
        &format!("/api/polls/{id}/close"),
        Some(&op),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["poll"]["state"], "closed");
    let (st, v) = http_api::post(
        &base,
        &format!("/api/polls/{id}/vote"),
        Some(&a),
        json!({"option": 2}),
    )
    .await;
    assert_eq!(st, 409);
    assert_eq!(v["error"]["code"], "conflict");
}

#[tokio::test]
async fn the_http_poll_endpoints_refuse_requests_without_a_valid_token() {
    let srv = TestServer::spawn().await;
    let base = srv.http_url();
    let body = json!({"question":"q?","options":["x","y"],"duration_s":60});
    let (st, v) = http_api::post(&base, "/api/polls", None, body.clone()).await;
    assert_eq!(st, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (st, _) = http_api::post(&base, "/api/polls", Some("sbt_wrong"), body).await;
    assert_eq!(st, 401);
    let (st, _) = http_api::get(&base, "/api/polls/1", None).await;
    assert_eq!(st, 401);
    let (st, _) = http_api::post(&base, "/api/polls/1/vote", None, json!({"option":1})).await;
    assert_eq!(st, 401);
    let (st, _) = http_api::post(&base, "/api/polls/1/close", None, json!({})).await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn the_http_api_answers_a_bad_poll_id_with_bad_request() {
    let srv = TestServer::spawn().await;
    let a = srv.add_agent("a", Role::Agent, &[]).await;
    let (st, v) = http_api::get(&srv.http_url(), "/api/polls/abc", Some(&a)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    let (st, v) = http_api::get(&srv.http_url(), "/api/polls/41", Some(&a)).await;
    assert_eq!(st, 404, "{v}");
}
