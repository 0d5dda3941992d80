//! Test support: a throwaway PostgreSQL cluster started from the machine's
//! own binaries, and helpers that give each test its own schema.
//!
//! - Binaries: `$LEASEHOLD_PG_BINDIR` if set (and nothing else then: a
//!   directory without them means "no PostgreSQL"), else `pg_config --bindir`,
//!   else the newest `/usr/lib/postgresql/*/bin`, else `initdb` on `PATH`.
//! - `initdb` runs once per machine and PostgreSQL version into a template
//!   directory under the system temp dir; each cluster copies it (much faster
//!   than `initdb`), listens on a free loopback port with its unix socket in
//!   its own temp dir, and trusts local connections (it never leaves
//!   127.0.0.1). Durability settings are relaxed (`fsync=off`): a throwaway
//!   cluster does not need to survive a power loss, and a clean stop (`pg_ctl
//!   stop -m fast`) still writes everything out.
//! - As root, `initdb`, `postgres` and `pg_ctl` run as user `postgres` (via
//!   `runuser`), with the temp dirs chowned to it.
//! - Cleanup: each cluster is paired with a small watchdog shell process that
//!   waits for its stdin to close, then stops the server and deletes the temp
//!   dir. Its stdin is held by the [`Cluster`], so the cluster goes away when
//!   it is dropped, and also when the test process ends in any way (even
//!   `kill -9`), which matters for the shared cluster held in a static.
//! - [`shared`] starts ONE cluster per test process (a `OnceLock`); under
//!   nextest, which runs each test in its own process, that is one per test.
//! - No binaries: [`shared`] prints `SKIPPED: no PostgreSQL binaries` and
//!   returns `None` so the test passes — unless the `CI` environment variable
//!   is set (and not `false`/`0`), in which case it panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{PgOptions, PgStore};

/// A running throwaway cluster.
pub struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// Whether the `CI` environment variable asks for strictness.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// Where the PostgreSQL server binaries are, if anywhere.
pub fn find_bindir() -> Option<PathBuf> {
    // An explicit choice is final: a directory without the binaries means
    // "no PostgreSQL" (which is also how the skip path is tested).
    if let Ok(dir) = std::env::var("LEASEHOLD_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return has_server_binaries(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server_binaries(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server_binaries(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| has_server_binaries(p)))
}

/// The effective user id: the owner of `/proc/self` (no `unsafe` needed).
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn is_root() -> bool {
    current_uid() == 0
}

fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}

/// A schema name no other test in any process uses.
pub fn unique_schema(prefix: &str) -> String {
    format!("{prefix}_{}", unique_suffix())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run(cmd: &mut Command, what: &str, log: &Path) -> Result<(), String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("{what}: cannot create {log:?}: {e}"))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Err(format!("{what} failed ({status}): {cmd:?}\n{text}"))
    }
}

fn chown_to(user: &str, path: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chown -R {user}: {path:?} failed: {status}"))
    }
}

impl Cluster {
    fn cmd(&self, bin: &str) -> Command {
        command_as(self.run_as.as_deref(), &self.bindir.join(bin))
    }

    /// Start a new cluster of its own (for tests that stop and restart it).
    pub fn start() -> Result<Cluster, String> {
        let bindir = find_bindir().ok_or("no PostgreSQL binaries found")?;
        let run_as = is_root().then(|| "postgres".to_string());
        let template = ensure_template(&bindir, run_as.as_deref())?;
        let dir = std::env::temp_dir().join(format!("leasehold-pg-{}", unique_suffix()));
        std::fs::create_dir(&dir).map_err(|e| format!("create {dir:?}: {e}"))?;
        // The watchdog first, so that the dir goes away whatever happens next.
        let watchdog = spawn_watchdog(&dir, &bindir, run_as.as_deref())?;
        let mut cluster = Cluster {
            dir,
            bindir,
            port: 0,
            run_as,
            watchdog: Mutex::new(Some(watchdog)),
        };
        let status = Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(cluster.dir.join("data"))
            .status()
            .map_err(|e| format!("cp: {e}"))?;
        if !status.success() {
            return Err(format!("copying the template cluster failed: {status}"));
        }
        std::fs::create_dir(cluster.dir.join("sock")).map_err(|e| e.to_string())?;
        if let Some(user) = &cluster.run_as {
            chown_to(user, &cluster.dir)?;
        }
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port().map_err(|e| format!("no free port: {e}"))?;
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c shared_buffers=32MB -c max_connections=300 -c log_min_messages=warning",
            self.port,
            self.dir.join("sock").display()
        );
        let mut cmd = self.cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(&mut cmd, "pg_ctl start", &self.dir.join("pg_ctl.out")).map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Stop the server like an operator would (`pg_ctl stop -m fast`):
    /// sessions are terminated, everything committed is written out.
    pub fn stop_fast(&self) {
        self.stop("fast");
    }

    /// Stop the server like a crash would (`pg_ctl stop -m immediate`: every
    /// server process quits at once, no checkpoint; the next start replays
    /// the WAL).
    pub fn stop_immediate(&self) {
        self.stop("immediate");
    }

    fn stop(&self, mode: &str) {
        let mut cmd = self.cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-m", mode, "stop"]);
        run(&mut cmd, "pg_ctl stop", &self.dir.join("pg_ctl.out")).expect("stop the cluster");
    }

    /// Start the server again after a stop, on the same port.
    pub fn restart(&self) {
        self.start_server().expect("restart the cluster");
    }

    /// The loopback TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for the superuser, database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The URL with `?schema=NAME`.
    pub fn url_with_schema(&self, schema: &str) -> String {
        format!("{}?schema={schema}", self.url())
    }

    /// A raw client, for checks that look under the store.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect a raw client")
    }

    /// A store on a new, empty schema of its own.
    pub fn fresh_store(&self) -> PgStore {
        self.store(&unique_schema("t"))
    }

    /// A store on `schema` with default options.
    pub fn store(&self, schema: &str) -> PgStore {
        self.store_with(PgOptions {
            schema: schema.to_string(),
            ..PgOptions::default()
        })
    }

    /// A store with the given options.
    pub fn store_with(&self, opts: PgOptions) -> PgStore {
        PgStore::connect_with(&self.url(), opts).expect("connect the store")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let taken = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn command_as(run_as: Option<&str>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

const WATCHDOG: &str = r#"
read -r _ignored || true
if [ -n "$3" ]; then
  runuser -u "$3" -- "$2/pg_ctl" -D "$1/data" -w -m immediate stop >/dev/null 2>&1
else
  "$2/pg_ctl" -D "$1/data" -w -m immediate stop >/dev/null 2>&1
fi
rm -rf "$1"
"#;

fn spawn_watchdog(
    dir: &Path,
    bindir: &Path,
    run_as: Option<&str>,
) -> Result<(Child, ChildStdin), String> {
    // In its own session, so that a test runner killing the test's process
    // group does not take the cleanup with it.
    let mut cmd = if Path::new("/usr/bin/setsid").exists() || Path::new("/bin/setsid").exists() {
        let mut c = Command::new("setsid");
        c.arg("sh");
        c
    } else {
        Command::new("sh")
    };
    let mut child = cmd
        .arg("-c")
        .arg(WATCHDOG)
        .arg("leasehold-pg-watchdog")
        .arg(dir)
        .arg(bindir)
        .arg(run_as.unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("watchdog has no stdin")?;
    Ok((child, stdin))
}

/// Bumped whenever the template's `initdb` options change.
const TEMPLATE_LAYOUT: &str = "v2";

/// `initdb` once per machine, PostgreSQL version and user; later clusters copy it.
fn ensure_template(bindir: &Path, run_as: Option<&str>) -> Result<PathBuf, String> {
    let version = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .map_err(|e| format!("postgres --version: {e}"))?;
    let version: String = String::from_utf8_lossy(&version.stdout)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // One template per machine, PostgreSQL version and user (its files
    // belong to whoever runs the server).
    let template = std::env::temp_dir().join(format!(
        "leasehold-pg-template-{TEMPLATE_LAYOUT}-{}-uid{}",
        version.trim_matches('_'),
        current_uid()
    ));
    if template.join("data").join("PG_VERSION").is_file() && template.join("ready").is_file() {
        return Ok(template);
    }
    let tmp = std::env::temp_dir().join(format!("leasehold-pg-template-tmp-{}", unique_suffix()));
    std::fs::create_dir(&tmp).map_err(|e| format!("create {tmp:?}: {e}"))?;
    if let Some(user) = run_as {
        chown_to(user, &tmp)?;
    }
    let mut cmd = command_as(run_as, &bindir.join("initdb"));
    cmd.arg("-D").arg(tmp.join("data")).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "-N",
        // 1 MiB WAL segments instead of 16: less to copy per cluster.
        "--wal-segsize=1",
    ]);
    let log = std::env::temp_dir().join(format!("leasehold-initdb-{}.log", unique_suffix()));
    let result = run(&mut cmd, "initdb", &log);
    let _ = std::fs::remove_file(&log);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::File::create(tmp.join("ready"))
        .and_then(|mut f| f.write_all(b"ok\n"))
        .map_err(|e| e.to_string())?;
    if std::fs::rename(&tmp, &template).is_err() {
        // Another process won the race; use its template.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if template.join("ready").is_file() {
        Ok(template)
    } else {
        Err(format!("template cluster {template:?} is incomplete"))
    }
}

/// The cluster shared by every test in this process, or `None` (after a loud
/// `SKIPPED` line) when the machine has no PostgreSQL binaries and `CI` is
/// not set. Panics when the cluster cannot start, or when binaries are
/// missing under `CI`.
pub fn shared() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            if find_bindir().is_none() {
                if in_ci() {
                    panic!(
                        "CI is set but no PostgreSQL binaries were found (pg_config --bindir, \
                         /usr/lib/postgresql/*/bin, PATH); install PostgreSQL"
                    );
                }
                let msg = "SKIPPED: no PostgreSQL binaries (install PostgreSQL or set \
                           LEASEHOLD_PG_BINDIR to run the PostgreSQL tests)";
                println!("{msg}");
                eprintln!("{msg}");
                return None;
            }
            Some(Cluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}")))
        })
        .as_ref()
}

/// A dedicated cluster (for tests that restart it), or `None` with the same
/// skip rules as [`shared`].
pub fn dedicated() -> Option<Cluster> {
    if find_bindir().is_none() {
        shared();
        return None;
    }
    Some(Cluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}")))
}
