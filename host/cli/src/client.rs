//! A small HTTP client for the commands that talk to a running server.

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends one request and returns the status and body as text; a non-2xx status is an
/// error that carries the server's message.
pub fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, String)> {
    let (status, bytes) = send_bytes(method, url, token, content_type, body)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `GET url` (with the bearer token, if any), parsed as JSON.
pub fn get_json(url: &str, token: Option<&str>) -> Result<serde_json::Value> {
    let (_, text) = send("GET", url, token, "application/json", Vec::new())?;
    serde_json::from_str(&text).with_context(|| format!("GET {url}: the answer is not JSON"))
}

/// Sends one request and returns the status and body bytes; a non-2xx status is an
/// error that carries the server's message.
pub fn send_bytes(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("building a request to {url}"))?;
        let response = client
            .request(request)
            .await
            .with_context(|| format!("{method} {url}: is `skewless serve` running there?"))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(text);
            bail!("{method} {url}: {status}: {message}");
        }
        Ok((status, bytes.to_vec()))
    })
}
