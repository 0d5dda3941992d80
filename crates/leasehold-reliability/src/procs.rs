//! Child processes: the server (`reliability-server`) and worker agents
//! (`reliability-agent`), with `SIGSTOP`, `SIGCONT` and `SIGKILL`.
//!
//! Signals go through the system `kill` command (this workspace forbids
//! `unsafe`, so no `libc::kill`). Output lines are read by a thread into a
//! channel, so a test waits on events with a deadline instead of sleeping.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Send a signal (`STOP`, `CONT`, `KILL`…) to a process.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("run kill -{sig} {pid}: {e}"));
    assert!(st.success(), "kill -{sig} {pid} failed: {st}");
}

/// A child whose stdout lines arrive on a channel.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Spawn `program` with `args` and extra `env`, stdout piped, stderr to
    /// a file next to nothing (inherited, so failures are visible in test output).
    pub fn spawn(program: &Path, args: &[String], env: &HashMap<String, String>) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `limit` for a line starting with `prefix`; returns it.
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Some(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Collect every line until the process closes stdout or `limit` passes.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return,
            }
        }
    }

    /// `SIGKILL` and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the process to exit by itself (e.g. at a failpoint), up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Never leave a stopped or running child behind.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `reliability-server`.
pub struct ServerProc {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl ServerProc {
    /// Start the server binary on `db` with a reaper every `reaper_ms` (0 = off)
    /// and extra environment (e.g. `FAILPOINTS`). Panics if it does not
    /// report listening within 30 s.
    pub fn start(
        bin: &Path,
        db: &str,
        reaper_ms: u64,
        env: &HashMap<String, String>,
    ) -> ServerProc {
        let args = vec![
            "--db".to_string(),
            db.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--reaper-interval-ms".into(),
            reaper_ms.to_string(),
        ];
        let mut proc = Proc::spawn(bin, &args, env);
        let line = proc
            .expect_line("LISTENING ", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("server did not start: {:?}", proc.seen));
        let addr = line.trim_start_matches("LISTENING ").trim().to_string();
        ServerProc {
            proc,
            url: format!("http://{addr}"),
        }
    }
}

/// Spawn a `reliability-agent` holding `task` as `owner`, authenticating with
/// `token` (empty: none).
pub fn agent(
    bin: &Path,
    url: &str,
    token: &str,
    task: &str,
    owner: &str,
    ttl_ms: u64,
    heartbeat_ms: u64,
) -> Proc {
    let args: Vec<String> = [
        "--url",
        url,
        "--task",
        task,
        "--owner",
        owner,
        "--ttl-ms",
        &ttl_ms.to_string(),
        "--heartbeat-ms",
        &heartbeat_ms.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut env = HashMap::new();
    env.insert("LEASEHOLD_TOKEN".to_string(), token.to_string());
    Proc::spawn(bin, &args, &env)
}
