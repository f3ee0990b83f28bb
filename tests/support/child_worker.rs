//! A worker process for crash tests: spawned with piped stdout, read line by line, SIGKILLed.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running worker process whose stdout lines arrive on a channel. Killed when dropped.
#[derive(Debug)]
pub struct ChildWorker {
    name: String,
    child: Child,
    lines: Receiver<String>,
}

impl ChildWorker {
    /// Spawns `program` with `args`, stdin closed, stdout piped, stderr inherited.
    pub fn spawn<I, S>(program: &str, args: I) -> ChildWorker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let name = std::path::Path::new(program)
            .file_name()
            .map_or_else(|| program.to_string(), |n| n.to_string_lossy().into_owned());
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {name}: {error}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("{name} has no piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildWorker { name, child, lines }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for a stdout line starting with `prefix`; `None` if the worker closed stdout first.
    /// Panics after `timeout`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} printed no `{prefix}` line within {timeout:?}",
                        self.name
                    )
                }
            }
        }
    }

    /// SIGKILLs the worker (a no-op if it already exited) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        // `Child::kill` sends SIGKILL on Unix.
        if let Err(error) = self.child.kill() {
            panic!("SIGKILL {}: {error}", self.name);
        }
        self.child
            .wait()
            .unwrap_or_else(|error| panic!("reap {}: {error}", self.name))
    }

    /// Waits for the worker to exit on its own; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(error) => panic!("poll {}: {error}", self.name),
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildWorker {
    /// Leaves no worker behind when an assertion fails.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
