//! The embedded admin HTTP API (cargo feature `admin`): list, inspect, signal, cancel and repair runs
//! over JSON, with live updates over Server-Sent Events, served by the engine inside the service's own
//! process.
//!
//! Off unless configured with [`EngineBuilder::admin`](crate::EngineBuilder::admin). It binds the
//! loopback address `127.0.0.1:7070` by default; binding any other address requires at least one
//! bearer token ([`AdminConfigBuilder::token`]), or [`EngineBuilder::start`](crate::EngineBuilder::start)
//! fails with [`Error::Config`]. Every endpoint is described, with curl
//! examples, in `docs/operations.md` ("Admin HTTP API"). The same server serves the web dashboard
//! at `/` (runs, one run's live timeline, workflow types; see "Web dashboard" there), whose browsers
//! log in with a token at `/login` and act under its identity.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orchestrator::Error> {
//! use orchestrator::Engine;
//! use orchestrator::admin::AdminConfig;
//!
//! let engine = Engine::builder()
//!     .in_memory()
//!     .admin(
//!         AdminConfig::builder()
//!             .bind(([127, 0, 0, 1], 0)) // port 0: any free port (see `Engine::admin_addr`)
//!             .token("alice", "a-long-random-secret-for-alice")
//!             .build(),
//!     )
//!     .start()
//!     .await?;
//! let addr = engine.admin_addr().expect("the admin API is configured");
//! assert!(addr.ip().is_loopback());
//! // curl -H 'Authorization: Bearer a-long-random-secret-for-alice' http://{addr}/api/v1/runs
//! engine.shutdown().await; // stops the admin server too
//! # Ok(())
//! # }
//! ```

pub(crate) mod actions;
mod auth;
mod body;
mod dashboard;
pub(crate) mod errors;
pub(crate) mod history;
mod routes;
pub(crate) mod runs;
mod server;
mod sse;

pub(crate) use server::{AdminListener, AdminServer, bind};

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Error;

/// The address the admin API binds when none is configured: loopback, port 7070.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7070);

/// The largest request body accepted when none is configured: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The shortest token secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// How the embedded admin HTTP API is served: address, tokens, read-only mode, limits.
///
/// Built with [`AdminConfig::builder`] and given to
/// [`EngineBuilder::admin`](crate::EngineBuilder::admin). See the [module documentation](self).
#[derive(Clone)]
pub struct AdminConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) tokens: Vec<Token>,
    pub(crate) read_only: bool,
    pub(crate) body_limit: usize,
    pub(crate) sse_poll_interval: Duration,
    pub(crate) max_streams: usize,
}

/// A bearer token and the identity recorded as the actor of what is done with it.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) identity: String,
    pub(crate) secret: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets are never printed.
        f.debug_struct("AdminConfig")
            .field("bind", &self.bind)
            .field(
                "token_identities",
                &self.tokens.iter().map(|t| &t.identity).collect::<Vec<_>>(),
            )
            .field("read_only", &self.read_only)
            .field("body_limit", &self.body_limit)
            .field("sse_poll_interval", &self.sse_poll_interval)
            .field("max_streams", &self.max_streams)
            .finish()
    }
}

impl AdminConfig {
    /// Starts configuring the admin API: loopback `127.0.0.1:7070`, no token, read-write, 1 MiB
    /// bodies, live updates polled every second, at most 32 live streams.
    pub fn builder() -> AdminConfigBuilder {
        AdminConfigBuilder {
            config: AdminConfig {
                bind: DEFAULT_BIND,
                tokens: Vec::new(),
                read_only: false,
                body_limit: DEFAULT_BODY_LIMIT,
                sse_poll_interval: Duration::from_secs(1),
                max_streams: 32,
            },
        }
    }

    /// The address to bind.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
    }

    /// Whether every mutating endpoint is refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Checks the configuration before anything is bound or opened.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let config = |message: String| Err(Error::Config { message });
        if self.tokens.is_empty() && !self.bind.ip().is_loopback() {
            return config(format!(
                "the admin API would listen on {} without a token: anyone who can reach that address \
                 could act on runs. Add `.token(identity, secret)` to the AdminConfig, or bind a \
                 loopback address such as 127.0.0.1",
                self.bind
            ));
        }
        for (index, token) in self.tokens.iter().enumerate() {
            if token.identity.trim().is_empty() {
                return config("an admin API token has an empty identity: name who uses it (it is recorded as the actor of their actions)".to_string());
            }
            if token.secret.len() < MIN_SECRET_BYTES {
                return config(format!(
                    "the admin API token of `{}` is {} bytes long; use a random secret of at least {MIN_SECRET_BYTES} bytes",
                    token.identity,
                    token.secret.len()
                ));
            }
            if token
                .secret
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                return config(format!(
                    "the admin API token of `{}` contains whitespace or control characters, which an Authorization header cannot carry",
                    token.identity
                ));
            }
            if self.tokens[..index]
                .iter()
                .any(|other| other.secret == token.secret)
            {
                return config(format!(
                    "two admin API tokens share one secret (`{}`'s): each identity needs its own",
                    token.identity
                ));
            }
        }
        if self.body_limit == 0 {
            return config("the admin API body_limit must be at least 1 byte".to_string());
        }
        if self.sse_poll_interval.is_zero() {
            return config("the admin API sse_poll_interval must be above zero".to_string());
        }
        if self.max_streams == 0 {
            return config("the admin API max_streams must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Builds an [`AdminConfig`].
#[derive(Debug, Clone)]
#[must_use = "an admin config builder does nothing until `.build()`"]
pub struct AdminConfigBuilder {
    config: AdminConfig,
}

impl AdminConfigBuilder {
    /// The address to listen on (default `127.0.0.1:7070`; port 0 picks a free port, reported by
    /// [`Engine::admin_addr`](crate::Engine::admin_addr)). Any address that is not loopback requires
    /// a [token](AdminConfigBuilder::token).
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.config.bind = addr.into();
        self
    }

    /// Accepts `Authorization: Bearer {secret}` as `identity` (call several times for several
    /// tokens). Once any token is configured, every endpoint except `/api/v1/health` (and the
    /// dashboard's page shells, assets and login, which hold no data) requires one — or a
    /// dashboard session opened with one — and
    /// every action records `identity` as its actor (without tokens the actor is `"local"`). A secret
    /// must be at least [`MIN_SECRET_BYTES`] bytes without whitespace; tokens are compared in constant
    /// time.
    pub fn token(mut self, identity: impl Into<String>, secret: impl Into<String>) -> Self {
        self.config.tokens.push(Token {
            identity: identity.into(),
            secret: secret.into(),
        });
        self
    }

    /// Refuses every mutating endpoint with `403 read_only` (default `false`); the dashboard hides its
    /// actions (logging in and out still works).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// The largest request body accepted, in bytes (default 1 MiB); larger ones get `413`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// How often a live stream (Server-Sent Events) re-reads the store to see whether its run or run
    /// list changed (default 1 s). Streams see runs other nodes drive too.
    pub fn sse_poll_interval(mut self, interval: Duration) -> Self {
        self.config.sse_poll_interval = interval;
        self
    }

    /// The most live streams open at once (default 32); more get `503 too_many_streams`.
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.config.max_streams = streams;
        self
    }

    /// The configuration (checked when the engine starts).
    pub fn build(self) -> AdminConfig {
        self.config
    }
}
