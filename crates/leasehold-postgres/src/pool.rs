//! A small blocking connection pool, and the transaction wrapper that retries.
//!
//! Why not r2d2: during an outage r2d2's `get` waits for its whole checkout
//! timeout while background threads retry, so every call hangs instead of
//! answering `unavailable` at once; and it cannot carry a per-connection
//! statement cache. This pool opens connections in the calling thread (a
//! refused connection fails the call immediately), keeps idle connections
//! LIFO, drops any connection whose socket broke, and — because a restart of
//! the server kills every idle connection at once — forgets all idle
//! connections when one of them turns out dead.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use leasehold_core::Error;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::error::{classify, describe, to_error, Class};

/// One open connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    stmts: HashMap<String, Statement>,
    /// Set when an error showed the socket is unusable.
    broken: bool,
}

impl Conn {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Run a query outside a transaction (a single statement is atomic).
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.prepared(sql)?;
        self.client.query(&st, params)
    }

    /// The raw client, for migrations.
    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A transaction on a pooled connection, with cached statements.
pub(crate) struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    stmts: &'a mut HashMap<String, Statement>,
}

impl Tx<'_> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Rows of a query.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.prepared(sql)?;
        self.tx.query(&st, params)
    }

    /// Number of rows a statement changed.
    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let st = self.prepared(sql)?;
        self.tx.execute(&st, params)
    }
}

/// Why a transaction body stopped.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A domain answer (not found, lease conflict…): roll back and return it.
    Domain(Error),
    /// A driver error, classified by [`crate::error::classify`].
    Pg(postgres::Error),
    /// Run the whole transaction again (e.g. an insert lost a race and the
    /// row now exists, so the operation becomes an update).
    Again(&'static str),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Domain(e)
    }
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

/// Pool settings taken from `PgOptions`.
pub(crate) struct PoolConfig {
    pub(crate) pg: postgres::Config,
    pub(crate) size: u32,
    pub(crate) checkout_timeout: Duration,
    pub(crate) retries: u32,
}

struct State {
    idle: Vec<Conn>,
    /// Connections open: idle plus checked out plus being opened.
    open: u32,
}

/// Counters, for tests and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections opened since the store was created.
    pub connects: u64,
    /// Transactions run again after a serialization failure or deadlock.
    pub serialization_retries: u64,
    /// Operations run again on a fresh connection after a broken one.
    pub reconnect_retries: u64,
    /// Broken connections dropped.
    pub dropped_broken: u64,
}

pub(crate) struct Pool {
    cfg: PoolConfig,
    state: Mutex<State>,
    freed: Condvar,
    stats: Mutex<PoolStats>,
}

/// A connection checked out of the pool; returned (or dropped if broken) on drop.
pub(crate) struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}

impl Pool {
    pub(crate) fn new(cfg: PoolConfig) -> Pool {
        Pool {
            cfg,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            stats: Mutex::new(PoolStats::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut PoolStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn stats(&self) -> PoolStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check out a connection: an idle one, or a new one if the pool is not
    /// full, or wait up to the checkout timeout for one to be returned.
    pub(crate) fn get(&self) -> Result<Pooled<'_>, Error> {
        let deadline = Instant::now() + self.cfg.checkout_timeout;
        let mut st = self.lock();
        loop {
            while let Some(conn) = st.idle.pop() {
                if conn.client.is_closed() {
                    st.open -= 1;
                    self.bump(|s| s.dropped_broken += 1);
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if st.open < self.cfg.size {
                st.open += 1;
                drop(st);
                return match self.cfg.pg.connect(NoTls) {
                    Ok(client) => {
                        self.bump(|s| s.connects += 1);
                        Ok(Pooled {
                            pool: self,
                            conn: Some(Conn {
                                client,
                                stmts: HashMap::new(),
                                broken: false,
                            }),
                        })
                    }
                    Err(e) => {
                        let mut st = self.lock();
                        st.open -= 1;
                        drop(st);
                        self.freed.notify_one();
                        Err(match classify(&e) {
                            Class::Internal | Class::BadInput | Class::Unique => Error::Internal(
                                format!("cannot connect to postgres: {}", describe(&e)),
                            ),
                            _ => Error::Unavailable(format!(
                                "cannot connect to postgres: {}; retry later",
                                describe(&e)
                            )),
                        })
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable(format!(
                    "all {} postgres connections stayed busy for {} ms; retry later or raise pool_size",
                    self.cfg.size,
                    self.cfg.checkout_timeout.as_millis()
                )));
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn put_back(&self, conn: Conn) {
        let mut st = self.lock();
        if conn.broken || conn.client.is_closed() {
            st.open -= 1;
            // A server restart kills every idle connection at once; reusing
            // them one by one would fail one call per connection.
            let stale = std::mem::take(&mut st.idle);
            st.open -= stale.len() as u32;
            drop(st);
            self.bump(|s| s.dropped_broken += 1 + stale.len() as u64);
            drop(stale);
        } else {
            st.idle.push(conn);
            drop(st);
        }
        self.freed.notify_one();
    }

    /// Run `body` in a transaction and commit it, retrying serialization
    /// failures and deadlocks up to the configured number of times, and
    /// connection failures that happened before the commit was sent on a
    /// fresh connection. `what` names the operation in error messages.
    pub(crate) fn write<T>(
        &self,
        what: &str,
        mut body: impl FnMut(&mut Tx<'_>) -> Result<T, Fail>,
    ) -> Result<T, Error> {
        let mut attempt = 0u32;
        let mut reconnects = 0u32;
        loop {
            let mut conn = self.get()?;
            let failure = {
                let Conn {
                    client,
                    stmts,
                    broken,
                } = &mut *conn;
                match client.transaction() {
                    Err(e) => Fail::Pg(e),
                    Ok(tx) => {
                        let mut tx = Tx { tx, stmts };
                        match body(&mut tx) {
                            Ok(v) => match tx.tx.commit() {
                                Ok(()) => return Ok(v),
                                Err(e) => {
                                    // The commit's outcome is unknown if the
                                    // connection broke while it was in flight.
                                    if classify(&e) == Class::Unavailable {
                                        *broken = true;
                                        return Err(Error::Unavailable(format!(
                                            "postgres connection lost while committing {what}; \
                                             the change may or may not have been applied: {}",
                                            describe(&e)
                                        )));
                                    }
                                    Fail::Pg(e)
                                }
                            },
                            Err(f) => f,
                        }
                    }
                }
            };
            match failure {
                Fail::Domain(e) => return Err(e),
                Fail::Again(why) => {
                    attempt += 1;
                    if attempt > self.cfg.retries.max(3) {
                        return Err(Error::Unavailable(format!(
                            "{what} lost a race {attempt} times ({why}); retry later"
                        )));
                    }
                }
                Fail::Pg(e) => match classify(&e) {
                    Class::Retry => {
                        attempt += 1;
                        if attempt > self.cfg.retries {
                            return Err(to_error(&e, what));
                        }
                        self.bump(|s| s.serialization_retries += 1);
                        drop(conn);
                        backoff(attempt);
                    }
                    Class::Unavailable => {
                        conn.broken = true;
                        // Before the commit nothing was applied: safe to run
                        // again once on a fresh connection (the pool forgets
                        // its idle connections when this one is broken).
                        if lost_connection(&e) && reconnects == 0 {
                            reconnects += 1;
                            self.bump(|s| s.reconnect_retries += 1);
                            continue;
                        }
                        return Err(to_error(&e, what));
                    }
                    _ => return Err(to_error(&e, what)),
                },
            }
        }
    }

    /// Run a read (one statement, atomic on its own) on a pooled connection,
    /// once more on a fresh connection if the first one turned out broken.
    pub(crate) fn read<T>(
        &self,
        what: &str,
        mut body: impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, Error> {
        let mut reconnects = 0u32;
        let mut attempt = 0u32;
        loop {
            let mut conn = self.get()?;
            match body(&mut conn) {
                Ok(v) => return Ok(v),
                Err(Fail::Domain(e)) => return Err(e),
                Err(Fail::Again(why)) => {
                    return Err(Error::Internal(format!(
                        "{what}: unexpected retry request ({why})"
                    )))
                }
                Err(Fail::Pg(e)) => match classify(&e) {
                    Class::Retry if attempt < self.cfg.retries => {
                        attempt += 1;
                        self.bump(|s| s.serialization_retries += 1);
                        drop(conn);
                        backoff(attempt);
                    }
                    Class::Unavailable => {
                        conn.broken = true;
                        if lost_connection(&e) && reconnects == 0 {
                            reconnects += 1;
                            self.bump(|s| s.reconnect_retries += 1);
                            continue;
                        }
                        return Err(to_error(&e, what));
                    }
                    _ => return Err(to_error(&e, what)),
                },
            }
        }
    }
}

/// Whether the error means the connection itself is gone (as opposed to a
/// statement timeout on a healthy one): worth one more try on a new one.
fn lost_connection(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => {
            *c == postgres::error::SqlState::ADMIN_SHUTDOWN
                || *c == postgres::error::SqlState::CRASH_SHUTDOWN
                || c.code().starts_with("08")
        }
    }
}

/// Wait a little before running a conflicting transaction again, longer each
/// time, so that the transactions it collided with can finish. The jitter
/// comes from the clock's sub-microsecond part, which is enough to keep
/// colliding threads from retrying in lockstep.
fn backoff(attempt: u32) {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            % 1000,
    );
    let base = 1u64 << attempt.min(6);
    std::thread::sleep(Duration::from_micros(base * 500 + jitter));
}
