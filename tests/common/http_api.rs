//! A small client for the JSON API under `/api`, with or without a bearer token.

use serde_json::Value;

/// Sends `method path` with an optional bearer token and JSON body; returns
/// the status and the JSON body (Null when the body is not JSON).
pub async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = tokio::time::timeout(super::WAIT, req.send())
        .await
        .expect("timed out waiting for the HTTP reply")
        .expect("HTTP request");
    let status = resp.status().as_u16();
    let json = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, json)
}

/// `GET path`.
pub async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    call(base, reqwest::Method::GET, path, token, None).await
}

/// `POST path` with a JSON body.
pub async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(base, reqwest::Method::POST, path, token, Some(body)).await
}
