//! A journal opened directly (`--db`): an SQLite file or a PostgreSQL database, through an engine
//! that drives nothing (`EngineBuilder::drive_runs(false)`).
//!
//! SQLite: reading verbs open the file read-only (`SqliteStore::open_read_only`), which works next
//! to the process that owns it. Changing verbs take the file's ownership, so they are refused while a
//! process owns it (use `--url`); with no owner they act directly, and the runs they make runnable are
//! driven by the service when it next opens the journal. PostgreSQL: the CLI is one more client of
//! the shared journal; the nodes claim what it makes runnable.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{Action, Backend, Progress, Sink, Watched};
use crate::cli::exit::{CliError, Exit};
use crate::engine::{Engine, EngineBuilder, Fork};
use crate::store::SqliteStore;

/// Whether a verb only reads, or changes runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Runs reached through a journal.
pub(crate) struct Journal {
    engine: Engine,
    /// The SQLite store opened here (closed at the end).
    sqlite: Option<SqliteStore>,
    /// Who actions are recorded as.
    actor: String,
    /// `--db` as given, for messages.
    location: String,
    postgres: bool,
}

impl Journal {
    /// Opens `db` (an SQLite path or a `postgres://` URL) for `access`, with the workflows the
    /// builder registers (their types render payloads; nothing is driven).
    pub(crate) async fn open(
        db: &str,
        pg_schema: &str,
        access: Access,
        builder: EngineBuilder,
        actor: String,
    ) -> Result<Journal, CliError> {
        let builder = builder.drive_runs(false);
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            return open_postgres(db, pg_schema, builder, actor).await;
        }
        let path = Path::new(db);
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => {
                return Err(CliError::new(
                    Exit::Journal,
                    "no_journal",
                    format!("`{db}` is not a file"),
                )
                .hint("--db takes an orchestrator journal file or a postgres:// URL"));
            }
            Err(error) => {
                return Err(CliError::new(
                    Exit::Journal,
                    "no_journal",
                    format!("no journal at `{db}`: {error}"),
                )
                .hint("--db takes an existing journal file (the service's `.sqlite(path)`) or a postgres:// URL; the CLI never creates one"));
            }
        }
        // Checked read-only first: a file that is not a journal (or of another version) is refused
        // before anything could write to it.
        let reader = SqliteStore::open_read_only(path)
            .await
            .map_err(|error| CliError::from_store(&error))?;
        let store = match access {
            Access::Read => reader,
            Access::Write => {
                reader.close().await;
                SqliteStore::open(path)
                    .await
                    .map_err(|error| CliError::from_store(&error))?
            }
        };
        let engine = builder
            .store(Arc::new(store.clone()))
            .start()
            .await
            .map_err(|error| CliError::from_engine(&error))?;
        Ok(Journal {
            engine,
            sqlite: Some(store),
            actor,
            location: db.to_string(),
            postgres: false,
        })
    }

    fn refuse_reader(&self) -> Result<(), CliError> {
        if self.sqlite.as_ref().is_some_and(SqliteStore::is_read_only) {
            return Err(CliError::new(
                Exit::Internal,
                "read_only",
                format!(
                    "`{}` was opened read-only for a changing verb",
                    self.location
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
    schema: &str,
    builder: EngineBuilder,
    actor: String,
) -> Result<Journal, CliError> {
    use crate::store::postgres::{PostgresOptions, PostgresStore};
    let options = PostgresOptions::new(url).schema(schema).pool_size(4);
    let store = PostgresStore::connect_with(options)
        .await
        .map_err(|error| CliError::from_store(&error))?;
    let engine = builder
        .store(Arc::new(store))
        .start()
        .await
        .map_err(|error| CliError::from_engine(&error))?;
    Ok(Journal {
        engine,
        sqlite: None,
        actor,
        location: redact(url),
        postgres: true,
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    _url: &str,
    _schema: &str,
    _builder: EngineBuilder,
    _actor: String,
) -> Result<Journal, CliError> {
    Err(
        CliError::usage("this orchestrator CLI was built without PostgreSQL support").hint(
            "install it with `cargo install orchestrator --features cli,postgres`, or use --url",
        ),
    )
}

/// A URL without its password, for messages.
#[cfg(feature = "postgres")]
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_string(),
    }
}

fn api(error: crate::admin::errors::ApiError) -> CliError {
    CliError::from_api(error.code, error.message)
}

fn engine_error(error: crate::error::Error) -> CliError {
    CliError::from_engine(&error)
}

fn done(actor: &str, action: &str, id: &str) -> Value {
    json!({ "workflow_id": id, "action": action, "actor": actor, "done": true })
}

#[async_trait]
impl Backend for Journal {
    async fn list(&self, pairs: &[(String, String)]) -> Result<Value, CliError> {
        let query = crate::admin::runs::run_query(pairs, &[]).map_err(api)?;
        let page = self.engine.list_runs(&query).await.map_err(engine_error)?;
        Ok(crate::admin::runs::page_json(&page, self.engine.codec()))
    }

    async fn describe(&self, id: &str) -> Result<Value, CliError> {
        crate::admin::runs::description(&self.engine, id)
            .await
            .map_err(api)
    }

    async fn act(&self, id: &str, action: &Action) -> Result<Value, CliError> {
        self.refuse_reader()?;
        crate::limits::check_workflow_id(id).map_err(engine_error)?;
        let engine = &self.engine;
        let actor = self.actor.as_str();
        let default_reason = |verb: &str| format!("{verb} by {actor} with the orchestrator CLI");
        match action {
            Action::Signal { name, payload } => engine
                .signal_json(id, name, payload.clone())
                .await
                .map_err(engine_error)?,
            Action::Cancel { reason } => {
                let reason = reason
                    .clone()
                    .unwrap_or_else(|| default_reason("cancelled"));
                engine.cancel(id, &reason).await.map_err(engine_error)?;
            }
            Action::Pause { reason } => {
                let reason = reason.clone().unwrap_or_else(|| default_reason("paused"));
                engine
                    .pause(id, actor, &reason)
                    .await
                    .map_err(engine_error)?;
            }
            Action::Resume => engine.resume(id, actor).await.map_err(engine_error)?,
            Action::Retry => engine.retry(id, actor).await.map_err(engine_error)?,
            Action::Terminate { reason } => {
                let reason = reason
                    .clone()
                    .unwrap_or_else(|| default_reason("terminated"));
                engine
                    .terminate(id, actor, &reason)
                    .await
                    .map_err(engine_error)?;
            }
            Action::Fork {
                from_step,
                new_id,
                input,
            } => {
                crate::limits::check_workflow_id(new_id).map_err(engine_error)?;
                let mut fork = Fork::new(*from_step, new_id.clone()).actor(actor);
                if let Some(input) = input {
                    let source = engine.run_record(id).await.map_err(engine_error)?;
                    let encoded = engine
                        .input_from_json(&source.workflow_name, input.clone())
                        .map_err(engine_error)?;
                    fork = fork.encoded_input(encoded);
                }
                let handle = engine.fork(id, fork).await.map_err(engine_error)?;
                return Ok(json!({
                    "workflow_id": handle.workflow_id(),
                    "forked_from": id,
                    "from_step": from_step,
                    "action": "fork",
                    "actor": actor,
                    "done": true,
                }));
            }
        }
        Ok(done(actor, action.verb(), id))
    }

    async fn bulk(
        &self,
        verb: &str,
        mut fields: Map<String, Value>,
        progress: Box<Progress>,
    ) -> Result<Value, CliError> {
        let dry_run = fields.get("dry_run") == Some(&Value::Bool(true));
        if !dry_run {
            self.refuse_reader()?;
        }
        if !fields.contains_key("reason") && matches!(verb, "pause" | "terminate" | "cancel") {
            let past = match verb {
                "pause" => "paused",
                "terminate" => "terminated",
                _ => "cancelled",
            };
            fields.insert(
                "reason".to_string(),
                Value::String(format!(
                    "{past} by {} with the orchestrator CLI",
                    self.actor
                )),
            );
        }
        let request =
            crate::admin::actions::bulk_request(verb, fields, &self.actor).map_err(api)?;
        let options = request.options.progress(move |state| {
            progress(state.matched, state.applied + state.skipped + state.failed);
        });
        let report = self
            .engine
            .bulk(&request.query, request.action, options)
            .await
            .map_err(engine_error)?;
        Ok(crate::admin::actions::bulk_report_json(
            verb,
            &self.actor,
            &report,
        ))
    }

    async fn watch(
        &self,
        watched: &Watched,
        interval: Duration,
        sink: &mut Sink<'_>,
    ) -> Result<(), CliError> {
        let interval = interval.max(Duration::from_millis(50));
        let mut last: Option<Value> = None;
        loop {
            let (name, data) = match watched {
                Watched::Run(id) => match self.engine.describe(id).await {
                    Ok(description) => (
                        "run",
                        serde_json::to_value(&description)
                            .map_err(|error| CliError::internal(error.to_string()))?,
                    ),
                    Err(crate::error::Error::NotFound { .. }) if last.is_some() => {
                        sink("gone", json!({ "status": "gone" }))?;
                        return Ok(());
                    }
                    Err(error) => return Err(engine_error(error)),
                },
                Watched::List(pairs) => ("runs", self.list(pairs).await?),
            };
            if last.as_ref() != Some(&data) {
                last = Some(data.clone());
                if !sink(name, data)? {
                    return Ok(());
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn export(&self, id: &str) -> Result<Value, CliError> {
        crate::admin::history::export_json(&self.engine, id)
            .await
            .map_err(api)
    }

    async fn import(&self, body: Map<String, Value>) -> Result<Value, CliError> {
        self.refuse_reader()?;
        let id = crate::admin::history::import_body(&self.engine, body)
            .await
            .map_err(api)?;
        Ok(json!({ "workflow_id": id, "action": "import", "actor": self.actor, "done": true }))
    }

    async fn replay_check(&self, body: Map<String, Value>) -> Result<Value, CliError> {
        if self.engine.workflow_names().is_empty() {
            return Err(CliError::new(
                Exit::Refused,
                "no_code",
                "replay-check replays histories on your workflows' code, and this orchestrator binary has none registered",
            )
            .hint("use --url (the service replays them with its own code), or build your own ops binary with orchestrator::cli::main_with(|engine| engine.register(..)) and run it with --db"));
        }
        let source = crate::admin::history::replay_source(&self.engine, body)
            .await
            .map_err(api)?;
        let report = self
            .engine
            .replay_check(source)
            .await
            .map_err(engine_error)?;
        crate::admin::history::report_json(&report).map_err(api)
    }

    fn after_action_note(&self, action: &Action) -> Option<String> {
        let driven = matches!(
            action,
            Action::Retry
                | Action::Resume
                | Action::Fork { .. }
                | Action::Signal { .. }
                | Action::Cancel { .. }
        );
        if !driven {
            return None;
        }
        Some(if self.postgres {
            "the CLI drives no runs: a node of the service claims this run and continues it"
                .to_string()
        } else {
            format!(
                "the CLI drives no runs: the service continues this run when it next opens `{}`",
                self.location
            )
        })
    }

    async fn close(&self) {
        self.engine.shutdown().await;
        if let Some(store) = &self.sqlite {
            store.close().await;
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            super::redact("postgres://user:secret@db:5432/app"),
            "postgres://…@db:5432/app"
        );
        assert_eq!(super::redact("postgres://db/app"), "postgres://db/app");
    }
}
