//! The accept loop: every connection under a header-read (and keep-alive idle) timeout and
//! a connection cap, so that slow or idle clients cannot hold the server's sockets and
//! descriptors forever. One connection over the cap is answered 503 and closed; a failed
//! accept (out of descriptors) is logged, counted, and retried after a pause.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;

use crate::state::AppState;

/// The answer to a connection over the cap: a 503 with the API's JSON error body.
fn too_many() -> Vec<u8> {
    let body = r#"{"error":"too many connections; retry later (the server's --max-connections is reached)"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`, then waits for in-flight requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = &state.config;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: say so, count it, and let some close.
                    tracing::error!(error = %e, "accepting a connection failed");
                    state.metrics.add("skewless_accept_errors_total", String::new(), 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state
                .metrics
                .add("skewless_connections_refused_total", String::new(), 1);
            tracing::warn!(
                cap = config.max_connections,
                "refusing a connection over the cap"
            );
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(&too_many()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = {
            let app = app.clone();
            hyper::service::service_fn(move |request| app.clone().call(request))
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}
