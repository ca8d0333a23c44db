//! `maxconf trigger`: sends an event to a running service's event sink as Pexip would (a
//! developer's `maxconf dev`, or a deployed service).

use std::time::Duration;

/// `maxconf trigger <event> <room>`: posts the event to `{base}/api/public/event_sink` as Pexip's
/// event sink does, and prints the answer.
pub async fn trigger(
    base: &str,
    event: &str,
    room: &str,
    user: &str,
    password: &str,
) -> Result<(), String> {
    crate::tls::ensure_crypto_provider();
    let url = format!("{}/api/public/event_sink", base.trim_end_matches('/'));
    let body = serde_json::json!({"event": event, "data": {"name": room}});
    let response = reqwest::Client::new()
        .post(&url)
        .basic_auth(user, Some(password))
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{event} for {room} sent to {url}: {status}");
        Ok(())
    } else {
        Err(format!("{url} answered {status}: {text}"))
    }
}
