//! Shutdown on signals (feature `signal`): [`shutdown_signal`], used by
//! [`ScopeBuilder::shutdown_on_signal`](crate::ScopeBuilder::shutdown_on_signal).

/// Resolves on the first Ctrl-C (SIGINT) or, on Unix, SIGTERM. If a handler cannot be
/// installed (no signal driver: build the runtime with `enable_io`), that signal is not
/// waited for, and if none can be, this never resolves.
///
/// # Cancel safety
///
/// Cancel safe: dropping it only stops waiting (the handlers stay installed, as tokio's
/// do).
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::pin!(ctrl_c, term);
    std::future::poll_fn(|cx| {
        if ctrl_c.as_mut().poll(cx).is_ready() || term.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
