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
//!
//! Each connection is a `tokio-postgres` client with a current-thread
//! runtime, driven in the calling thread only while a call waits (what the
//! blocking `postgres` crate does inside), so that a transaction can send
//! `BEGIN` with its first statement and `COMMIT` with its last in one round
//! trip each ([`Tx::query`], [`Tx::query_pair`], [`Tx::query_commit`]).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{join, join_all};
use leasehold_core::Error;
use postgres::types::ToSql;
use postgres::{Row, Statement};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Connection, NoTls, Socket};

use crate::error::{classify, describe, to_error, Class};

/// The socket half of a connection: polled only inside [`Link::block_on`],
/// in the calling thread (no background thread, no hand-off per message).
type Driver = Pin<Box<Connection<Socket, NoTlsStream>>>;

/// What runs the futures of one connection: a current-thread runtime and the
/// connection's socket driver (`None` once the connection ended).
struct Link {
    /// Always `Some` until `Drop` takes it.
    rt: Option<tokio::runtime::Runtime>,
    driver: Option<Driver>,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Dropping a runtime from inside another runtime's context panics,
        // and the server drops its last store handle on a Tokio thread at
        // shutdown. There, let the runtime go without blocking on it.
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

impl Link {
    /// Run `fut` to completion in this thread, driving the socket meanwhile.
    /// Several requests started in `fut` (see `join`) go out back to back
    /// before any answer is awaited: that is the pipelining.
    fn block_on<T>(
        &mut self,
        fut: impl Future<Output = Result<T, postgres::Error>>,
    ) -> Result<T, postgres::Error> {
        let driver = &mut self.driver;
        let mut fut = pin!(fut);
        let rt = self.rt.as_ref().expect("a live link has its runtime");
        rt.block_on(poll_fn(|cx| {
            if let Some(d) = driver.as_mut() {
                loop {
                    match d.as_mut().poll_message(cx) {
                        // Notices and notifications: nothing listens for them.
                        Poll::Ready(Some(Ok(_))) => continue,
                        Poll::Ready(Some(Err(e))) => {
                            *driver = None;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(None) => {
                            // Dropping the driver fails the pending requests.
                            *driver = None;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            fut.as_mut().poll(cx)
        }))
    }
}

/// One open connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    link: Link,
    stmts: HashMap<String, Statement>,
    /// Set when an error showed the socket is unusable.
    broken: bool,
}

/// Prepare `sql` once per connection (statements are schema-qualified, so
/// no `search_path` is ever set).
fn prepared(
    client: &Client,
    link: &mut Link,
    stmts: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = stmts.get(sql) {
        return Ok(s.clone());
    }
    let s = link.block_on(client.prepare(sql))?;
    stmts.insert(sql.to_string(), s.clone());
    Ok(s)
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.link.driver.is_none() || self.client.is_closed()
    }

    /// Run a query outside a transaction (a single statement is atomic).
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = prepared(&self.client, &mut self.link, &mut self.stmts, sql)?;
        self.link.block_on(self.client.query(&st, params))
    }
}

/// Where a [`Tx`] stands. BEGIN is not sent on its own: it goes out with the
/// first statement. COMMIT goes out with the last write when the body says
/// so ([`Tx::query_commit`]), else after the body returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    NotBegun,
    Open,
    /// COMMIT was sent with the last statement (and answered).
    Ended,
}

/// A transaction on a pooled connection, with cached statements.
pub(crate) struct Tx<'a> {
    client: &'a Client,
    link: &'a mut Link,
    stmts: &'a mut HashMap<String, Statement>,
    state: TxState,
}

/// The outcome of a statement sent together with COMMIT.
pub(crate) enum Committed<T> {
    /// The statement succeeded and the transaction committed.
    Done(T),
    /// The statement failed inside the database: the transaction rolled back
    /// and nothing of it was applied. The error is the statement's.
    RolledBack(postgres::Error),
}

impl Tx<'_> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        prepared(self.client, self.link, self.stmts, sql)
    }

    /// Failpoint `name` (see [`crate::failpoints`]): send the statement
    /// that causes the configured fault, in this transaction. Compiled out
    /// without the `failpoints` feature.
    #[inline(always)]
    fn failpoint(&mut self, name: &str) -> Result<(), postgres::Error> {
        if let Some(sql) = crate::failpoints::fault(name) {
            let client = self.client;
            self.run(client.batch_execute(sql))?;
        }
        Ok(())
    }

    /// Rows of a query (the transaction's BEGIN rides with the first one).
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        self.failpoint("pg::statement")?;
        let st = self.prepared(sql)?;
        self.run(self.client.query(&st, params))
    }

    /// Rows of two queries, sent back to back in one round trip (with BEGIN
    /// if it was not sent yet); the second runs after the first.
    pub(crate) fn query_pair(
        &mut self,
        a: (&str, &[&(dyn ToSql + Sync)]),
        b: (&str, &[&(dyn ToSql + Sync)]),
    ) -> Result<(Vec<Row>, Vec<Row>), postgres::Error> {
        self.failpoint("pg::statement")?;
        let (sa, sb) = (self.prepared(a.0)?, self.prepared(b.0)?);
        let client = self.client;
        let (ra, rb) =
            self.run(async { Ok(join(client.query(&sa, a.1), client.query(&sb, b.1)).await) })?;
        Ok((ra?, rb?))
    }

    /// Rows of several queries, sent back to back in one round trip (with
    /// BEGIN if it was not sent yet), run in order (group commit's loads).
    pub(crate) fn query_many(
        &mut self,
        stmts: &[(&str, Vec<&(dyn ToSql + Sync)>)],
    ) -> Result<Vec<Vec<Row>>, postgres::Error> {
        self.failpoint("pg::statement")?;
        let mut prepared = Vec::with_capacity(stmts.len());
        for (sql, _) in stmts {
            prepared.push(self.prepared(sql)?);
        }
        let client = self.client;
        let all = self.run(async {
            Ok(join_all(
                prepared
                    .iter()
                    .zip(stmts)
                    .map(|(st, (_, params))| client.query(st, params)),
            )
            .await)
        })?;
        all.into_iter().collect()
    }

    /// Send `fut`'s request(s), preceded by BEGIN when not yet begun.
    fn run<T>(
        &mut self,
        fut: impl Future<Output = Result<T, postgres::Error>>,
    ) -> Result<T, postgres::Error> {
        debug_assert_ne!(self.state, TxState::Ended, "statement after commit");
        if self.state == TxState::NotBegun {
            self.state = TxState::Open;
            let client = self.client;
            let (b, r) = self
                .link
                .block_on(async { Ok(join(client.batch_execute("BEGIN"), fut).await) })?;
            b?;
            return r;
        }
        self.link.block_on(fut)
    }

    /// Run the transaction's last statement and COMMIT in one round trip.
    /// `Err` means the outcome is unknown only when the error has no SQLSTATE
    /// (the connection broke with both in flight): the caller reports it so.
    pub(crate) fn query_commit(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Committed<Vec<Row>>, Fail> {
        self.failpoint("pg::statement")?;
        self.failpoint("pg::before_commit")?;
        let st = self.prepared(sql)?;
        let client = self.client;
        let begun = self.state != TxState::NotBegun;
        self.state = TxState::Ended;
        let (rows, commit) = if begun {
            self.link.block_on(async {
                Ok(join(client.query(&st, params), client.batch_execute("COMMIT")).await)
            })?
        } else {
            // Nothing read in this transaction: the statement alone is atomic.
            (self.link.block_on(client.query(&st, params)), Ok(()))
        };
        match (rows, commit) {
            (Ok(rows), Ok(())) => {
                // Committed, the caller has no answer yet (a failpoint may abort here).
                let _ = crate::failpoints::fault("pg::after_commit");
                Ok(Committed::Done(rows))
            }
            // A statement the database refused aborted the transaction, and
            // PostgreSQL answers the COMMIT of an aborted one with a rollback.
            (Err(e), _) if e.code().is_some() => Ok(Committed::RolledBack(e)),
            (Err(e), _) | (Ok(_), Err(e)) => Err(Fail::Commit(e)),
        }
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
    /// COMMIT (or the statement sent with it) failed without an answer from
    /// the database, or the database refused the COMMIT itself.
    Commit(postgres::Error),
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
    pub(crate) pg: tokio_postgres::Config,
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
                if conn.is_closed() {
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
                return match self.open() {
                    Ok(conn) => {
                        self.bump(|s| s.connects += 1);
                        Ok(Pooled {
                            pool: self,
                            conn: Some(conn),
                        })
                    }
                    Err(e) => {
                        let mut st = self.lock();
                        st.open -= 1;
                        drop(st);
                        self.freed.notify_one();
                        Err(e)
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

    /// Open a connection in this thread, with its own current-thread runtime.
    fn open(&self) -> Result<Conn, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Internal(format!("cannot start a postgres connection runtime: {e}"))
            })?;
        let (client, driver) = rt
            .block_on(self.cfg.pg.connect(NoTls))
            .map_err(|e| connect_error(&e))?;
        Ok(Conn {
            client,
            link: Link {
                rt: Some(rt),
                driver: Some(Box::pin(driver)),
            },
            stmts: HashMap::new(),
            broken: false,
        })
    }

    fn put_back(&self, conn: Conn) {
        let mut st = self.lock();
        if conn.broken || conn.is_closed() {
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
                    link,
                    stmts,
                    broken,
                } = &mut *conn;
                let mut tx = Tx {
                    client,
                    link,
                    stmts,
                    state: TxState::NotBegun,
                };
                let outcome = body(&mut tx).and_then(|v| {
                    if tx.state == TxState::Open {
                        tx.failpoint("pg::before_commit")?; // no-op unless configured
                    }
                    Ok(v)
                });
                let state = tx.state;
                match (outcome, state) {
                    (Ok(v), TxState::Ended | TxState::NotBegun) => return Ok(v),
                    (Ok(v), TxState::Open) => match link.block_on(client.batch_execute("COMMIT")) {
                        Ok(()) => {
                            let _ = crate::failpoints::fault("pg::after_commit");
                            return Ok(v);
                        }
                        Err(e) => Fail::Commit(e),
                    },
                    (Err(f), TxState::Open) => {
                        // Release the row locks before the connection goes back.
                        // If that fails the connection is unusable (the
                        // body's answer still stands).
                        if link.block_on(client.batch_execute("ROLLBACK")).is_err() {
                            *broken = true;
                        }
                        f
                    }
                    (Err(f), _) => f,
                }
            };
            match failure {
                Fail::Domain(e) => return Err(e),
                Fail::Commit(e) => {
                    // The outcome is unknown if the connection broke while
                    // the commit was in flight.
                    if classify(&e) == Class::Unavailable && e.code().is_none() {
                        conn.broken = true;
                        return Err(Error::Unavailable(format!(
                            "postgres connection lost while committing {what}; \
                             the change may or may not have been applied: {}",
                            describe(&e)
                        )));
                    }
                    if classify(&e) == Class::Unavailable {
                        conn.broken = true;
                        return Err(to_error(&e, what));
                    }
                    if classify(&e) == Class::Retry {
                        attempt += 1;
                        if attempt > self.cfg.retries {
                            return Err(to_error(&e, what));
                        }
                        self.bump(|s| s.serialization_retries += 1);
                        drop(conn);
                        backoff(attempt);
                        continue;
                    }
                    return Err(to_error(&e, what));
                }
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
                Err(Fail::Commit(e)) => return Err(to_error(&e, what)),
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

/// The error for a connection that could not be opened.
pub(crate) fn connect_error(e: &postgres::Error) -> Error {
    match classify(e) {
        Class::Internal | Class::BadInput | Class::Unique => {
            Error::Internal(format!("cannot connect to postgres: {}", describe(e)))
        }
        _ => Error::Unavailable(format!(
            "cannot connect to postgres: {}; retry later",
            describe(e)
        )),
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
