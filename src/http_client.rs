//! What the HTTP adapters share about talking to a server: how a client is built for a base URL,
//! and how a transport error reads.
//!
//! Owns: the TLS set-up by scheme and the wording of a `reqwest` error in our own errors and
//! logs. Used by both adapters
//! (`source::mobbex`, `erp::erpnext`) so that neither imports the other. Must not know either
//! API's shapes, status codes or retry rules: those stay in the adapter (and in `retry`).

/// A client builder for a server at `base`. For a plain `http://` server no TLS roots are loaded:
/// reqwest's default verifier reads and parses every certificate of the system's store when the
/// client is built (measured: the largest single cost of a short `paysync sync` against loopback
/// servers, BENCHMARKS.md), which an `http://` server never needs. Such a client cannot follow a
/// redirect to `https://` (it fails with an unknown-issuer error naming no certificate) — a
/// server that redirects should be configured by its `https://` URL in the first place.
pub fn client_builder_for(base: &url::Url) -> reqwest::ClientBuilder {
    // reqwest's own retries (of HTTP/2 refusals, by default) are off: every retry is ours
    // (`retry.rs` for reads, `pipeline/write.rs` for creates, which must never be sent twice
    // behind our back), and with them off a request is not copied before it is sent.
    let builder =
        reqwest::Client::builder().retry(reqwest::retry::never().max_retries_per_request(0));
    if base.scheme() == "http" {
        builder.tls_certs_only(std::iter::empty())
    } else {
        builder
    }
}

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
