use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn an_agent_creates_claims_and_completes_a_task() {
    let srv = TestServer::spawn().await;
    let mut a = srv.agent("agent-1", &["rust"]).await;
    assert_eq!(a.welcome["agent"], "agent-1");
    assert_eq!(a.welcome["limits"]["max_frame_bytes"], 65536);
    let t = a
        .ok(
            json!({"type":"task.create","title":"build it","requires":["rust"]}),
            "task",
        )
        .await;
    assert_eq!(t["task"]["state"], "open");
    let created = a.event("task.created").await;
    assert_eq!(created["data"]["task"]["title"], "build it");
    let c = a.ok(json!({"type":"task.claim"}), "task").await;
    assert_eq!(c["task"]["state"], "claimed");
    assert_eq!(c["task"]["assignee"], "agent-1");
    let id = c["task"]["id"].clone();
    let d = a
        .ok(
            json!({"type":"task.complete","task_id":id,"result":{"ok":true}}),
            "task",
        )
        .await;
    assert_eq!(d["task"]["state"], "done");
    let s = a.ok(json!({"type":"status"}), "status").await;
    assert_eq!(s["tasks"]["done"], 1);
    assert_eq!(s["agents_online"], 1);
}
