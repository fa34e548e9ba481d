//! The dashboard in a real browser: headless Chromium over WebDriver.
//! Skips (and says so) when chromium or chromedriver is not installed
//! (Debian packages `chromium` and `chromium-driver`).

use crate::common::webdriver::{browser_tools, Browser};
use crate::common::*;
use serde_json::json;
use swarmbridge::core::model::Role;

#[tokio::test]
async fn dashboard_shows_a_new_task_live_and_an_operator_cancels_it_and_broadcasts() {
    let Some((driver, chrome)) = browser_tools() else {
        eprintln!(
            "SKIPPED dashboard browser test: chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let srv = TestServer::spawn().await;
    let op_token = srv.add_agent("op", Role::Operator, &[]).await;
    let mut worker = srv.agent("worker", &["rust"]).await;
    let browser = Browser::launch(&driver, &chrome).await;
    browser.goto(&srv.url("/")).await;
    browser.wait_for_text("#conn-status", "live").await;
    browser
        .wait_for_text("#agents li[data-agent=\"worker\"]", "worker")
        .await;

    // a task created over WebSocket appears without a reload
    let task = worker
        .create_task(json!({"title": "index the archive", "requires": ["rust"]}))
        .await;
    let id = task["id"].as_i64().unwrap();
    let card = format!("#col-open .task[data-id=\"{id}\"]");
    browser.wait_for_text(&card, "index the archive").await;
    browser
        .wait_for_text("#feed li[data-kind=\"task.created\"]", "index the archive")
        .await;
    // the insights panel lists its queue
    browser
        .wait_for_text("#slow-queues tr[data-queue=\"rust\"]", "rust")
        .await;

    // a second one is claimed, to show the claimed column and the agent at work
    let busy = worker
        .create_task(json!({"title": "review the patch"}))
        .await;
    worker
        .ok(json!({"type": "task.claim", "task_id": busy["id"]}), "task")
        .await;
    browser
        .wait_for_text("#agents li[data-agent=\"worker\"]", "working on")
        .await;

    // the operator enters a token and cancels the first task
    let input = browser.wait_for("#token").await;
    browser.type_text(&input, &op_token).await;
    let save = browser.wait_for("#save-token").await;
    browser.click(&save).await;
    browser
        .wait_for_text("#token-state", "actions enabled")
        .await;
    let cancel = browser.wait_for(&format!("{card} button.cancel")).await;
    browser.click(&cancel).await;
    browser
        .wait_for(&format!("#col-cancelled .task[data-id=\"{id}\"]"))
        .await;
    let cancelled = worker.event("task.cancelled").await;
    assert_eq!(cancelled["data"]["task"]["id"], id);
    assert_eq!(cancelled["data"]["task"]["state"], "cancelled");

    // and broadcasts; the agent gets it and the feed shows it
    let text = browser.wait_for("#bc-text").await;
    browser.type_text(&text, "standup in 5 minutes").await;
    let send = browser.wait_for("#broadcast").await;
    browser.click(&send).await;
    let b = worker.event("broadcast").await;
    assert_eq!(b["data"]["text"], "standup in 5 minutes");
    assert_eq!(b["data"]["from"], "op");
    browser
        .wait_for_text("#feed li[data-kind=\"broadcast\"]", "standup in 5 minutes")
        .await;
    browser
        .wait_for_text("#action-result", "broadcast sent")
        .await;

    // the claimed task is completed: the board, the statistics and the chart follow
    worker
        .ok(
            json!({"type": "task.complete", "task_id": busy["id"]}),
            "task",
        )
        .await;
    browser
        .wait_for(&format!("#col-done .task[data-id=\"{}\"]", busy["id"]))
        .await;
    browser
        .wait_for_text("#stats tr[data-agent=\"worker\"] td:nth-child(3)", "1")
        .await;
    // p50 from claim to done is shown with its unit
    browser
        .wait_for_text("#stats tr[data-agent=\"worker\"] td:nth-child(8)", "s")
        .await;
    browser
        .wait_for("#chart rect.bar[height]:not([height=\"0\"])")
        .await;
    // and the insights panel the agent's record
    browser
        .wait_for_text(
            "#unreliable-agents tr[data-agent=\"worker\"] td:nth-child(2)",
            "100%",
        )
        .await;

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).unwrap();
    let out = target.join("dashboard.png");
    std::fs::write(&out, png).unwrap();
    eprintln!("dashboard screenshot: {}", out.display());
    browser.quit().await;
}
