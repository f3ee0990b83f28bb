//! The admin server's lifecycle: bound before the engine opens its store (so a taken port fails
//! `start`), served on the engine's runtime, stopped by `Engine::shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::AdminConfig;
use super::errors::ApiError;
use crate::engine::{Engine, WeakEngine};
use crate::error::Error;

/// How long `Engine::shutdown` waits for requests in flight before it drops the server.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What every handler shares.
pub(crate) struct AdminState {
    /// The engine served (not kept alive by the server).
    engine: WeakEngine,
    pub(crate) config: AdminConfig,
    /// Permits for live streams.
    pub(crate) streams: Arc<Semaphore>,
    /// Turns `true` (or closes) when the server stops: live streams end.
    pub(crate) stop: watch::Receiver<bool>,
    /// The dashboard's logged-in browsers.
    pub(crate) sessions: super::dashboard::Sessions,
}

impl AdminState {
    /// The engine, unless it is gone.
    pub(crate) fn engine(&self) -> Result<Engine, ApiError> {
        self.engine
            .upgrade()
            .ok_or_else(|| ApiError::unavailable("the engine has shut down"))
    }
}

/// A listening socket for the admin API, with its checked configuration.
#[derive(Debug)]
pub(crate) struct AdminListener {
    listener: TcpListener,
    config: AdminConfig,
}

/// Checks `config` and binds its address.
pub(crate) async fn bind(config: AdminConfig) -> Result<AdminListener, Error> {
    config.validate()?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|error| Error::Config {
            message: format!(
                "the admin API cannot listen on {}: {error} (choose another `.bind(..)` address, or port 0 for any free port)",
                config.bind
            ),
        })?;
    Ok(AdminListener { listener, config })
}

/// A running admin server.
#[derive(Debug)]
pub(crate) struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Serves `engine` on `listener` until [`AdminServer::stop`] (or until the engine is dropped).
    pub(crate) fn serve(listener: AdminListener, engine: &Engine) -> Result<AdminServer, Error> {
        let addr = listener
            .listener
            .local_addr()
            .map_err(|error| Error::Config {
                message: format!("the admin API socket has no local address: {error}"),
            })?;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(AdminState {
            engine: engine.downgrade(),
            streams: Arc::new(Semaphore::new(listener.config.max_streams)),
            config: listener.config,
            stop: stopped.clone(),
            sessions: super::dashboard::Sessions::default(),
        });
        let app = super::routes::router(state);
        let mut signal = stopped;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener.listener, app).with_graceful_shutdown(async move {
                // Stopped, or the engine (and this server's sender with it) was dropped.
                let _ = signal.wait_for(|stop| *stop).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "the admin API server stopped");
            }
        });
        tracing::info!(%addr, "admin API listening");
        Ok(AdminServer { addr, stop, task })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, ends live streams, and waits (a few seconds at most) for the
    /// requests in flight.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.task).await.is_err() {
            tracing::warn!("admin API requests still running at shutdown were dropped");
            abort.abort();
        }
    }
}
