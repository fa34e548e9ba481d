//! Twitch credentials that expire: a refused OAuth token is refreshed at
//! the token endpoint (a local fake of Twitch's) without a restart, and a
//! bot that cannot log in says why on `/ready` and the dashboard.

use crate::common::fake_twitch::{exclusive, FakeTwitch, FakeTwitchAuth};
use crate::common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use swarmbridge::config::{ChannelList, Config, Secret};

const CH: &str = "loginchan";

fn twitch_login(cfg: &mut Config, fake: &FakeTwitch) {
    cfg.twitch.username = "swarmbot".into();
    cfg.twitch.oauth_token = Some(Secret::new("oauth:expired-token"));
    cfg.twitch.channels = ChannelList(vec![CH.into()]);
    cfg.twitch.server = Some(fake.addr());
    cfg.twitch.reconnect.base_ms = 50;
    cfg.twitch.reconnect.max_ms = 300;
    cfg.twitch.reconnect.min_interval_ms = 20;
}

async fn get_json(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// Polls `/ready` until `pred` holds on its body (bounded by WAIT).
async fn ready_until(srv: &TestServer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = get_json(srv.url("/ready")).await;
        if pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never showed {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_refused_twitch_token_is_refreshed_and_the_bot_logs_in_without_a_restart() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    fake.set_accepted_token(Some("fresh-access-1"));
    let auth = FakeTwitchAuth::spawn("client-1", "client-secret-1", "refresh-1").await;
    let url = auth.token_url();
    let srv = TestServer::spawn_with(|cfg| {
        twitch_login(cfg, &fake);
        cfg.twitch.client_id = Some("client-1".into());
        cfg.twitch.client_secret = Some(Secret::new("client-secret-1"));
        cfg.twitch.refresh_token = Some(Secret::new("refresh-1"));
        cfg.twitch.token_url = url;
    })
    .await;
    fake.wait_joined(CH).await;
    assert_eq!(fake.passwords(), ["expired-token", "fresh-access-1"]);
    let forms = auth.requests();
    assert_eq!(forms.len(), 1, "{forms:?}");
    assert_eq!(forms[0]["grant_type"], "refresh_token");
    assert_eq!(forms[0]["refresh_token"], "refresh-1");
    assert_eq!(forms[0]["client_id"], "client-1");
    let ready = ready_until(&srv, "twitch up", |b| b["twitch"] == "up").await;
    assert!(ready["twitch_error"].is_null(), "{ready}");
}

#[tokio::test]
async fn a_twitch_bot_that_cannot_log_in_says_why_on_ready_and_the_dashboard() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    fake.set_accepted_token(Some("some-other-token"));
    let srv = TestServer::spawn_with(|cfg| twitch_login(cfg, &fake)).await;
    let ready = ready_until(&srv, "the login failure", |b| {
        b["twitch_error"]
            .as_str()
            .is_some_and(|e| e.contains("Login authentication failed"))
    })
    .await;
    assert_eq!(ready["twitch"], "down", "{ready}");
    assert_eq!(ready["status"], "ready", "the database is fine: {ready}");
    let snapshot = get_json(srv.url("/dashboard/snapshot")).await;
    let shown = &snapshot["platforms"]["twitch_error"];
    assert!(
        shown.as_str().is_some_and(|e| e.contains("login failed")),
        "{snapshot}"
    );
}

#[tokio::test]
async fn a_refresh_refused_by_the_token_endpoint_says_why_on_ready() {
    let _one = exclusive().await;
    let fake = FakeTwitch::spawn(false).await;
    fake.set_accepted_token(Some("fresh-access-1"));
    let auth = FakeTwitchAuth::spawn("client-1", "client-secret-1", "refresh-1").await;
    let url = auth.token_url();
    let srv = TestServer::spawn_with(|cfg| {
        twitch_login(cfg, &fake);
        cfg.twitch.client_id = Some("client-1".into());
        cfg.twitch.client_secret = Some(Secret::new("client-secret-1"));
        cfg.twitch.refresh_token = Some(Secret::new("revoked-refresh"));
        cfg.twitch.token_url = url;
    })
    .await;
    let ready = ready_until(&srv, "the refresh failure", |b| {
        b["twitch_error"]
            .as_str()
            .is_some_and(|e| e.contains("Invalid refresh token"))
    })
    .await;
    assert_eq!(ready["twitch"], "down", "{ready}");
    assert!(
        !ready.to_string().contains("revoked-refresh"),
        "the refresh token is not shown: {ready}"
    );
}
