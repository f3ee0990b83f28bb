//! A fresh PostgreSQL schema per test on the server named by `ORCHESTRATOR_TEST_POSTGRES_URL`, dropped
//! when the value is dropped; without the variable, a loud SKIPPED and `None`.

use std::io::Write;

use orchestrator::store::{PostgresOptions, PostgresStore};
use tokio_postgres::NoTls;

/// The environment variable that names the test server.
pub const URL_VAR: &str = "ORCHESTRATOR_TEST_POSTGRES_URL";

/// A schema of its own on the test server (dropped at the end).
#[derive(Debug)]
pub struct PgSchema {
    /// The server's URL.
    pub url: String,
    /// The schema's name.
    pub name: String,
}

impl PgSchema {
    /// A new schema named `{prefix}_{random}`, or `None` after printing, past the test harness's output
    /// capture, that the tests of `what` did not run.
    pub fn fresh(prefix: &str, what: &str) -> Option<Self> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Some(PgSchema {
                url,
                name: format!("{prefix}_{:016x}", fastrand::u64(..)),
            }),
            _ => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {URL_VAR} is not set ({what} did not run)"
                );
                None
            }
        }
    }

    /// Store options on this schema with a pool of `pool_size` connections.
    pub fn options(&self, pool_size: usize) -> PostgresOptions {
        PostgresOptions::new(self.url.clone())
            .schema(self.name.clone())
            .pool_size(pool_size)
    }

    /// A store (a "node") on this schema; each call opens its own pool.
    pub async fn store(&self, pool_size: usize) -> PostgresStore {
        PostgresStore::connect_with(self.options(pool_size))
            .await
            .expect("connect to the test PostgreSQL server")
    }

    /// A raw connection, to look at (or tamper with) the tables.
    pub async fn raw(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("raw connection to the test PostgreSQL server");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        // Drop runs inside a runtime (or while panicking): use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test schema");
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client.batch_execute(&sql).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema `{}`: {dropped:?}", self.name);
        }
    }
}
