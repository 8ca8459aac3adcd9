//! What the HTTP adapters share about talking to a server (today: how a transport error reads).
//!
//! Owns: the wording of a `reqwest` error in our own errors and logs. Used by both adapters
//! (`source::mobbex`, `erp::erpnext`) so that neither imports the other. Must not know either
//! API's shapes, status codes or retry rules: those stay in the adapter (and in `retry`).

/// The text of a transport error: what went wrong (timed out, connection failed, broken body)
/// and its first cause. reqwest's own `Display` prints the URL; ours carry no secret (credentials
/// travel in headers), but the text stays short and free of query strings all the same.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    if let Some(cause) = std::error::Error::source(e) {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused connection says so, and the URL (with its query) is not in the text.
    #[tokio::test]
    async fn a_refused_connection_reads_as_such_without_the_url() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/p?token=s3cr3t"))
            .send()
            .await
            .unwrap_err();
        let text = describe_reqwest(&e);
        assert!(text.starts_with("connection failed"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("/p?"), "{text}");
    }
}
