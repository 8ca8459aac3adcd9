//! Fault helpers shared by the simulated APIs: the error bodies real servers and the proxies in
//! front of them send (Frappe JSON, Mobbex's envelope, nginx pages, Envoy texts, nothing), dropped
//! connections, and faults aimed at the create of one payment ([`Simulator::fail_creates`]).
//! The server's contention (workers, series locks, deadlocks) is in [`contention`].
//!
//! Every random choice here goes through [`State::hit`]/[`State::draw`] (the seeded RNG), and only
//! when the fault's rate is above zero, so runs stay reproducible per seed and the draws of the
//! older faults are unchanged when the new rates are left at 0.

// Helpers return `Result<_, Response>` to short-circuit with an HTTP answer, as the handlers do.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde_json::Value;

use super::{Shared, Simulator, State, erpnext, mercadopago, mobbex};

pub(crate) mod contention;
pub(crate) use contention::Contention;

/// The shape of an error answer's body, as different layers of a real deployment write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorBody {
    /// What the application itself writes: Mobbex's `{"result": false, "code", "error"}`
    /// envelope, or a Frappe exception body (`exception`, `exc_type`, `exc`) for ERPNext.
    Json,
    /// An nginx error page (`text/html`), as a reverse proxy answers when the app is down or slow.
    Html,
    /// A one-line `text/plain` text, as Envoy-style proxies and load balancers answer.
    PlainText,
    /// No body at all, as some proxies and load balancers answer a timeout.
    Empty,
}

impl ErrorBody {
    /// Every shape, in the order random draws pick from.
    pub const ALL: [ErrorBody; 4] = [
        ErrorBody::Json,
        ErrorBody::Html,
        ErrorBody::PlainText,
        ErrorBody::Empty,
    ];
    /// The shapes a proxy in front of the application writes.
    pub const PROXY: [ErrorBody; 3] = [ErrorBody::Html, ErrorBody::PlainText, ErrorBody::Empty];

    /// A short lower-case name, used in [`super::SimStats::faults_injected`] labels.
    pub fn label(self) -> &'static str {
        match self {
            ErrorBody::Json => "json",
            ErrorBody::Html => "html",
            ErrorBody::PlainText => "text",
            ErrorBody::Empty => "empty",
        }
    }
}

/// A fault aimed at one attempt to create the Payment Entry of one `reference_no`
/// (see [`Simulator::fail_creates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateFault {
    /// 429 "Too Many Requests", with `Retry-After: n` or without the header (a rate limiter).
    /// Nothing is committed.
    TooManyRequests { retry_after: Option<u64> },
    /// The server (or its proxy) fails before doing anything: this status and body shape, nothing
    /// committed.
    ServerError { status: u16, body: ErrorBody },
    /// The entry is validated and committed as usual, then a proxy that gave up answers this
    /// status and body instead of the real answer. (If validation refuses the entry, nothing is
    /// committed and the answer is replaced all the same.)
    /// (Use a proxy's body: Frappe never answers with its exception body after committing.)
    LostAfterCommit { status: u16, body: ErrorBody },
    /// A proxy answers 504 with an empty body at once, while the server keeps working on the
    /// request: the entry is validated and committed only `after` later (or not at all if
    /// validation refuses it then), as a server still busy with a request its client gave up on.
    CommitLater { after: Duration },
}

impl Simulator {
    /// The next creates (`POST /api/resource/Payment Entry`) whose body has this `reference_no`
    /// consume these faults in order, one per attempt; once they are used up, creates behave
    /// normally again. Calling it again for the same `reference_no` queues more faults. Only
    /// attempts that pass authentication and the random gate faults (429, 5xx) consume a fault;
    /// a targeted fault replaces the random create faults of its attempt (drops, answers lost
    /// after commit, hangs).
    pub fn fail_creates(&self, reference_no: &str, faults: Vec<CreateFault>) {
        self.with(|s| {
            s.targeted
                .entry(reference_no.to_string())
                .or_default()
                .extend(faults)
        });
    }

    /// The next requests of `api` that pass authentication get these answers instead of the
    /// real one, one each, in order (ERPNext: reads only; creates have [`Self::fail_creates`]).
    /// Lets a test try one exact answer — a status with a body shape, a 429, a dropped
    /// connection — and see what the client does with it.
    pub fn fail_next(&self, api: SimApi, answers: Vec<NextAnswer>) {
        self.with(|s| s.next_answers.entry(api).or_default().extend(answers));
    }

    /// Drop the targeted faults still queued for `reference_no` (the server "recovers").
    pub fn clear_create_faults(&self, reference_no: &str) {
        self.with(|s| {
            s.targeted.remove(reference_no);
        });
    }
}

impl State {
    /// Count one injected fault under `label` (see `SimStats::faults_injected`).
    pub(crate) fn note_fault(&mut self, label: &str) {
        *self
            .stats
            .faults_injected
            .entry(label.to_string())
            .or_default() += 1;
    }

    /// One of `items`, uniformly, from the seeded RNG.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let i = (self.draw() * items.len() as f64) as usize;
        items[i.min(items.len() - 1)]
    }
}

/// The 5xx statuses random server errors are drawn from.
pub(crate) const SERVER_ERRORS: [u16; 4] = [500, 502, 503, 504];

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `"502 Bad Gateway"` with nginx's wording (`503 Service Temporarily Unavailable`,
/// `504 Gateway Time-out`).
fn status_line(code: StatusCode) -> String {
    let reason = match code.as_u16() {
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => code.canonical_reason().unwrap_or("Error"),
    };
    format!("{} {reason}", code.as_u16())
}

/// A proxy's error answer: nginx's page, an Envoy-style line of text, or nothing. `Json` is left
/// to the caller (each API writes its own).
fn proxy_answer(code: StatusCode, body: ErrorBody) -> Response {
    match body {
        ErrorBody::Html => {
            let line = status_line(code);
            let page = format!(
                "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            (code, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
        ErrorBody::PlainText => {
            let text = match code.as_u16() {
                502 => {
                    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
                }
                503 => {
                    "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
                }
                504 => "upstream request timeout",
                _ => "Internal Server Error",
            };
            (code, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
        }
        ErrorBody::Empty | ErrorBody::Json => (code, Body::empty()).into_response(),
    }
}

/// A proxy's error answer (`Json` gives an empty body: each API writes its own JSON).
pub(crate) fn proxy_error(code: u16, body: ErrorBody) -> Response {
    proxy_answer(status(code), body)
}

/// A Mobbex error answer: the `{"result": false, "code", "error"}` envelope for `Json` (codes
/// `INTERNAL_ERROR`, `BAD_GATEWAY`, `SERVICE_UNAVAILABLE`, `GATEWAY_TIMEOUT`), else a proxy's.
pub(crate) fn mobbex_error(code: u16, body: ErrorBody) -> Response {
    let code = status(code);
    if body != ErrorBody::Json {
        return proxy_answer(code, body);
    }
    let (name, message) = match code.as_u16() {
        502 => ("BAD_GATEWAY", "Bad Gateway"),
        503 => ("SERVICE_UNAVAILABLE", "Service Unavailable"),
        504 => ("GATEWAY_TIMEOUT", "Gateway Timeout"),
        _ => ("INTERNAL_ERROR", "Internal Server Error"),
    };
    mobbex::error(code, name, message)
}

/// An ERPNext error answer: for `Json` a Frappe exception body as the app writes it (500: the
/// MariaDB deadlock `OperationalError`; 502: `InterfaceError (0, '')`, the database connection
/// lost; 503: `SessionStopped`, maintenance mode; 504: `QueryTimeoutError`; any other status: the
/// deadlock body), else a proxy's.
pub(crate) fn erp_error(code: u16, body: ErrorBody) -> Response {
    let code = status(code);
    if body != ErrorBody::Json {
        return proxy_answer(code, body);
    }
    let (exc_type, message) = match code.as_u16() {
        502 => ("InterfaceError", "(0, '')"),
        503 => ("SessionStopped", "Session Stopped"),
        504 => (
            "QueryTimeoutError",
            "(3024, 'Query execution was interrupted, maximum statement execution time exceeded')",
        ),
        _ => (
            "OperationalError",
            "(1213, 'Deadlock found when trying to get lock; try restarting transaction')",
        ),
    };
    erpnext::frappe_error(code, exc_type, Some(message), false)
}

/// 429 "Too Many Requests" with `Retry-After: secs`, or without the header when `None`
/// (rate limiters do both).
pub(crate) fn too_many_requests(retry_after: Option<u64>) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    if let Some(secs) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    r
}

fn connection_reset() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "simulated dropped connection",
    )
}

/// The server closes the connection before the status line (a crashed or killed worker): the
/// body stream fails at once, so hyper drops the connection with nothing sent and the client's
/// request fails.
pub(crate) fn drop_before_answer() -> Response {
    let stream = futures::stream::once(async { Err::<Bytes, _>(connection_reset()) });
    Body::from_stream(stream).into_response()
}

/// The server sends the status line, a `content-length` of the whole body and only `sent` of it,
/// then closes the connection (reset mid-transfer): the client's read of the body fails.
fn cut(mut head: Response, sent: Bytes, full_len: usize) -> Response {
    head.headers_mut()
        .insert(header::CONTENT_LENGTH, full_len.into());
    let stream = futures::stream::iter([Ok::<_, std::io::Error>(sent)]).chain(
        futures::stream::once(async {
            // Let hyper flush the head and the first chunk before the failure.
            tokio::task::yield_now().await;
            Err(connection_reset())
        }),
    );
    *head.body_mut() = Body::from_stream(stream);
    head
}

/// An answer cut mid-transfer, decided before the handler runs (reads have nothing to lose):
/// 200, a JSON `content-type`, a `content-length` of 2048, only `prefix` (the beginning of a
/// typical answer), then the connection closes.
pub(crate) fn drop_mid_answer(prefix: &'static str) -> Response {
    let head = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")]).into_response();
    cut(head, Bytes::from_static(prefix.as_bytes()), 2048)
}

/// The real answer cut mid-transfer: its status and headers, half of its body, then the
/// connection closes.
pub(crate) async fn cut_answer(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    cut(
        Response::from_parts(parts, Body::empty()),
        half,
        bytes.len(),
    )
}

// ---- gates ---------------------------------------------------------------------------------

/// Which API a [`Simulator::fail_next`] answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimApi {
    Mobbex,
    Erpnext,
    /// Every Mercado Pago and MercadoLibre call but the token endpoint (after authentication).
    MercadoPago,
    /// `POST /oauth/token`: the queued answer replaces the whole request (nothing rotated).
    MercadoPagoToken,
}

/// One answer queued by [`Simulator::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAnswer {
    /// This status with this body shape (the API's own error body for `Json`).
    Status(u16, ErrorBody),
    /// 429, with `Retry-After: n` or without it.
    TooManyRequests(Option<u64>),
    /// The connection closes in the middle of a 200 answer.
    Drop,
}

/// A queued [`NextAnswer`] for `api`, if any, as the response to send.
pub(crate) fn next_answer(s: &mut State, api: SimApi) -> Option<Response> {
    let answer = s.next_answers.get_mut(&api)?.pop_front()?;
    let name = match api {
        SimApi::Mobbex => "mobbex",
        SimApi::Erpnext => "erp",
        SimApi::MercadoPago => "mp",
        SimApi::MercadoPagoToken => "mp token",
    };
    Some(match answer {
        NextAnswer::Status(status, body) => {
            s.note_fault(&format!("next {name} {status} {}", body.label()));
            match api {
                SimApi::Mobbex => mobbex_error(status, body),
                SimApi::Erpnext => erp_error(status, body),
                SimApi::MercadoPago | SimApi::MercadoPagoToken => {
                    mercadopago::mp_error(status, body)
                }
            }
        }
        NextAnswer::TooManyRequests(ra) => {
            s.note_fault(&format!("next {name} 429"));
            match api {
                SimApi::Mobbex | SimApi::Erpnext => too_many_requests(ra),
                SimApi::MercadoPago | SimApi::MercadoPagoToken => {
                    mercadopago::too_many_requests(ra)
                }
            }
        }
        NextAnswer::Drop => {
            s.note_fault(&format!("next {name} drop"));
            match api {
                SimApi::Mobbex => drop_mid_answer(r#"{"result":true,"data":{"docs":["#),
                SimApi::Erpnext => drop_mid_answer(r#"{"data":[{"name":""#),
                SimApi::MercadoPago => drop_mid_answer(mercadopago::DROP_PREFIX),
                SimApi::MercadoPagoToken => drop_mid_answer(r#"{"access_token":"APP_USR-"#),
            }
        }
    })
}

/// The newer Mobbex faults, drawn after auth and the older ones: a queued [`NextAnswer`],
/// `mobbex_5xx_any_rate`, then `mobbex_drop_connection_rate`. `Err` is the answer to send.
pub(crate) fn mobbex_gate(s: &mut State) -> Result<(), Response> {
    if let Some(r) = next_answer(s, SimApi::Mobbex) {
        return Err(r);
    }
    let f = &s.opts.faults;
    let (any_5xx, drop) = (f.mobbex_5xx_any_rate, f.mobbex_drop_connection_rate);
    if s.hit(any_5xx) {
        let status = s.pick(&SERVER_ERRORS);
        let shape = s.pick(&ErrorBody::ALL);
        s.note_fault(&format!("mobbex {status} {}", shape.label()));
        return Err(mobbex_error(status, shape));
    }
    if s.hit(drop) {
        s.note_fault("mobbex drop mid-answer");
        return Err(drop_mid_answer(r#"{"result":true,"data":{"docs":["#));
    }
    Ok(())
}

/// The newer ERPNext faults of every request, drawn after auth and the older ones: `erp_5xx_rate`,
/// then `erp_drop_connection_rate` (except for Payment Entry creates, whose drops
/// [`before_commit`] decides). `Err` is the answer to send.
pub(crate) fn erp_gate(s: &mut State, read: bool, create: bool) -> Result<(), Response> {
    if !create && let Some(r) = next_answer(s, SimApi::Erpnext) {
        return Err(r);
    }
    let f = &s.opts.faults;
    let (any_5xx, drop) = (f.erp_5xx_rate, f.erp_drop_connection_rate);
    if s.hit(any_5xx) {
        let status = s.pick(&SERVER_ERRORS);
        let shape = s.pick(&ErrorBody::ALL);
        let when = if create { " before commit" } else { "" };
        s.note_fault(&format!("erp {status} {}{when}", shape.label()));
        return Err(erp_error(status, shape));
    }
    if !create && s.hit(drop) {
        if read {
            s.note_fault("erp drop mid-answer");
            return Err(drop_mid_answer(r#"{"data":[{"name":""#));
        }
        s.note_fault("erp drop before answer");
        return Err(drop_before_answer());
    }
    Ok(())
}

// ---- Payment Entry creates ----------------------------------------------------------------

/// What happens to a create after it is committed.
pub(crate) enum AfterCommit {
    /// The real answer, unless `erp_lost_after_commit_rate` replaces it.
    Normal,
    /// The connection drops mid-answer (`erp_drop_connection_rate`, after commit).
    Cut,
    /// A targeted [`CreateFault::LostAfterCommit`].
    Answer { status: u16, body: ErrorBody },
}

impl AfterCommit {
    /// A targeted fault decides this attempt's answer: the random `erp_lost_response_rate` and
    /// `erp_timeout_rate` are not drawn for it.
    pub(crate) fn is_targeted(&self) -> bool {
        matches!(self, AfterCommit::Answer { .. })
    }
}

/// Creates an entry from `body` and counts it as the existing stats do (`erp_writes_ok`, the
/// `writes_ok_tx` signal). Returns the answer and whether it was committed. `overlapped`: see
/// [`erpnext::create_payment_entry`].
pub(crate) fn commit_create(s: &mut State, body: &Value, overlapped: bool) -> (Response, bool) {
    let r = erpnext::create_payment_entry(s, body, overlapped);
    let committed = r.is_ok();
    if committed {
        s.stats.erp_writes_ok += 1;
        let n = s.stats.erp_writes_ok;
        s.writes_ok_tx.send_replace(n);
    }
    (r.unwrap_or_else(|e| e), committed)
}

/// The faults of a create that come before the commit: a targeted fault of its `reference_no`,
/// or a drop drawn from `erp_drop_connection_rate` (half before, half after the commit). `Err` is
/// the answer to send now (the attempt is then counted in `erp_writes` here); `Ok` says what to do
/// after the commit.
pub(crate) fn before_commit(state: &Shared, body: &Value) -> Result<AfterCommit, Response> {
    let mut s = state.lock().expect("poisoned");
    let targeted = body
        .get("reference_no")
        .and_then(|r| r.as_str())
        .and_then(|r| s.targeted.get_mut(r))
        .and_then(VecDeque::pop_front);
    let answer = match targeted {
        None => {
            let rate = s.opts.faults.erp_drop_connection_rate;
            if !s.hit(rate) {
                return Ok(AfterCommit::Normal);
            }
            if s.draw() >= 0.5 {
                return Ok(AfterCommit::Cut);
            }
            s.note_fault("erp drop before commit");
            drop_before_answer()
        }
        Some(CreateFault::LostAfterCommit { status, body }) => {
            return Ok(AfterCommit::Answer { status, body });
        }
        Some(CreateFault::TooManyRequests { retry_after }) => {
            s.note_fault(match retry_after {
                Some(_) => "targeted 429",
                None => "targeted 429 no retry-after",
            });
            too_many_requests(retry_after)
        }
        Some(CreateFault::ServerError {
            status,
            body: shape,
        }) => {
            s.note_fault(&format!(
                "targeted {status} {} before commit",
                shape.label()
            ));
            erp_error(status, shape)
        }
        Some(CreateFault::CommitLater { after }) => {
            s.note_fault("targeted commit later");
            let (state, body) = (state.clone(), body.clone());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                commit_create(&mut state.lock().expect("poisoned"), &body, false);
            });
            (StatusCode::GATEWAY_TIMEOUT, Body::empty()).into_response()
        }
    };
    s.stats.erp_writes += 1;
    Err(answer)
}

/// The faults of a create after the commit (`resp` is the real answer): the targeted answer or
/// the drop decided by [`before_commit`] (a drop cuts the real answer mid-transfer, committed or
/// refused), else, if committed, a 502/504 drawn from `erp_lost_after_commit_rate` with any body
/// shape (a proxy that gave up).
pub(crate) async fn after_commit(
    state: &Shared,
    resp: Response,
    committed: bool,
    after: AfterCommit,
) -> Response {
    match after {
        AfterCommit::Answer { status, body } => {
            let when = if committed {
                "after commit"
            } else {
                "after refusal"
            };
            state
                .lock()
                .expect("poisoned")
                .note_fault(&format!("targeted lost {when} {status} {}", body.label()));
            erp_error(status, body)
        }
        AfterCommit::Cut => {
            let when = if committed {
                "after commit"
            } else {
                "after refusal"
            };
            let label = format!("erp drop {when}");
            state.lock().expect("poisoned").note_fault(&label);
            cut_answer(resp).await
        }
        AfterCommit::Normal if !committed => resp,
        AfterCommit::Normal => {
            let lost = {
                let mut s = state.lock().expect("poisoned");
                let rate = s.opts.faults.erp_lost_after_commit_rate;
                s.hit(rate).then(|| {
                    let status = s.pick(&[502, 504]);
                    // Only a proxy answers after the commit: Frappe writes an exception body only
                    // when it raised, and then it rolled the request back (frappe/app.py).
                    let body = s.pick(&ErrorBody::PROXY);
                    s.note_fault(&format!("erp lost after commit {status} {}", body.label()));
                    (status, body)
                })
            };
            match lost {
                Some((status, body)) => erp_error(status, body),
                None => resp,
            }
        }
    }
}

#[cfg(test)]
mod tests;
