//! The Redis backend: the same rows, the same ordering and the same reads as
//! [`LocalStore`](crate::LocalStore), kept in a Redis server so that several Skewless
//! servers can serve from one store.
//!
//! Layout, under a prefix (`skewless` by default) that separates deployments:
//!
//! ```text
//! {prefix}:row:{view}:{fingerprint}:{entity key}   the encoded row (row.rs)
//! {prefix}:rows:{view}:{fingerprint}              rows held (a counter)
//! {prefix}:bytes:{view}:{fingerprint}             key and row bytes held (a counter)
//! {prefix}:views                                  hash: view -> fingerprint it holds
//! ```
//!
//! A write runs one Lua script per chunk of rows: for each key, the stored row is
//! replaced only if the new one's `(event_ts, created_ts)` is not older (a tie goes to
//! the later write, as in the local store). The comparison reads the little-endian
//! timestamps byte by byte, so it is exact and does not depend on Redis's locale.
//!
//! Durability: a write is acknowledged once Redis has answered it. Redis fsyncs its
//! append-only file before answering only with `appendonly yes` and `appendfsync always`;
//! [`RedisStore::open`] checks both and refuses to start otherwise, unless
//! [`RedisOptions::require_fsync`] is off.

use std::collections::HashMap;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use skewless_core::DType;
use skewless_core::assemble::ViewColumnsBuilder;

use crate::events::{EventBatch, EventSchema, History};
use crate::{Error, OnlineStore, Result, StoreStats, ViewSchema, WriteBatch, row};

mod events;
use events::Events;

/// Rows sent to Redis in one script call.
const ROWS_PER_CALL: usize = 1_000;
/// Keys asked for in one `SCAN` step, when dropping the rows of a changed view.
const SCAN_COUNT: usize = 1_000;
/// How long one Redis call may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the newer row of each key; counts the rows added and the bytes they changed.
const WRITE: &str = r"
local function not_older(old, new)
  for field = 0, 1 do
    local base = field * 8
    for i = base + 8, base + 1, -1 do
      local a, b = string.byte(old, i), string.byte(new, i)
      if i == base + 8 then a = (a + 128) % 256; b = (b + 128) % 256 end
      if a ~= b then return b > a end
    end
  end
  return true
end
local added, bytes = 0, 0
for i = 3, #KEYS do
  local new = ARGV[i - 2]
  local old = redis.call('GET', KEYS[i])
  if not old then
    redis.call('SET', KEYS[i], new)
    added = added + 1
    bytes = bytes + #KEYS[i] + #new
  elseif not_older(old, new) then
    redis.call('SET', KEYS[i], new)
    bytes = bytes + #new - #old
  end
end
if added ~= 0 then redis.call('INCRBY', KEYS[1], added) end
if bytes ~= 0 then redis.call('INCRBY', KEYS[2], bytes) end
return added
";

/// How to reach and use a Redis server.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// The prefix of every key: deployments sharing a Redis need distinct prefixes.
    pub prefix: String,
    /// Refuse a Redis that does not fsync each write before answering it
    /// (`appendonly yes`, `appendfsync always`). On by default: without it, a write
    /// acknowledged just before Redis crashes can be lost.
    pub require_fsync: bool,
    /// How often pushed events are moved from Redis into their sources' offline logs (a
    /// backfill through the server, and a rebuild, flush first).
    pub event_flush_interval: Duration,
}

impl RedisOptions {
    /// Options for `url` with the default prefix `skewless`, fsync required, events
    /// flushed every minute.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "skewless".into(),
            require_fsync: true,
            event_flush_interval: Duration::from_secs(60),
        }
    }
}

/// Connections to one Redis server.
pub(crate) struct Pool {
    client: redis::Client,
    /// Idle connections; a call takes one (or opens one) and gives it back if it worked.
    idle: Mutex<Vec<redis::Connection>>,
}

impl Pool {
    /// Runs `f` on a connection: an idle one, or a new one.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut con = match idle {
            Some(con) => con,
            None => {
                let con = self
                    .client
                    .get_connection_with_timeout(TIMEOUT)
                    .map_err(unavailable("connecting"))?;
                con.set_read_timeout(Some(TIMEOUT))
                    .and_then(|()| con.set_write_timeout(Some(TIMEOUT)))
                    .map_err(unavailable("setting timeouts"))?;
                con
            }
        };
        let result = f(&mut con);
        // A failed call may leave a reply unread: that connection is not reused.
        if result.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(con);
        }
        result
    }
}

/// Calls `each` with every step of `SCAN` over the keys that start with `head`, until it
/// answers false or the keys end.
fn scan(
    con: &mut redis::Connection,
    head: &str,
    mut each: impl FnMut(&mut redis::Connection, Vec<Vec<u8>>) -> Result<bool>,
) -> Result<()> {
    let pattern = format!("{}*", glob_literal(head));
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query(con)
            .map_err(unavailable("listing keys"))?;
        if !each(con, keys)? || next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Whether any key starts with `head` (one step of `SCAN` may find none of many keys: it
/// looks until the end).
fn any_key(con: &mut redis::Connection, head: &str) -> Result<bool> {
    let mut found = false;
    scan(con, head, |_, keys| {
        found = !keys.is_empty();
        Ok(!found)
    })?;
    Ok(found)
}

/// Deletes every key that starts with `head` (and not with `keep`); returns how many.
pub(crate) fn unlink_matching(
    con: &mut redis::Connection,
    head: &str,
    keep: Option<&str>,
) -> Result<u64> {
    let mut dropped = 0u64;
    scan(con, head, |con, keys| {
        let mut unlink = redis::cmd("UNLINK");
        let mut doomed = 0;
        for key in &keys {
            if keep.is_none_or(|k| !key.starts_with(k.as_bytes())) {
                unlink.arg(key.as_slice());
                doomed += 1;
            }
        }
        if doomed > 0 {
            let n: u64 = unlink.query(con).map_err(unavailable("dropping keys"))?;
            dropped += n;
        }
        Ok(true)
    })?;
    Ok(dropped)
}

#[derive(Debug, Clone)]
struct View {
    fingerprint: u64,
    dtypes: Vec<DType>,
}

/// An online store in a Redis server.
pub struct RedisStore {
    pool: Arc<Pool>,
    prefix: String,
    views: RwLock<HashMap<String, View>>,
    write: redis::Script,
    events: Arc<Events>,
    /// Stops the thread that flushes events to the offline logs, and waits for it.
    flusher: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str) -> impl FnOnce(redis::RedisError) -> Error + '_ {
    move |e| Error::Unavailable(format!("redis: {what}: {e}"))
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStore {
    /// Connects, checks that Redis fsyncs every write (unless told not to), and reads
    /// `views` from what Redis holds. Unlike [`OnlineStore::set_views`], opening drops
    /// nothing: another server sharing the store may hold views this one has not applied
    /// yet, or has applied since. A view held under other features reads as empty here.
    pub fn open(options: &RedisOptions, views: &[ViewSchema]) -> Result<Self> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| Error::Unavailable(format!("redis: cannot use `{}`: {e}", options.url)))?;
        let pool = Arc::new(Pool {
            client,
            idle: Mutex::new(Vec::new()),
        });
        let events = Arc::new(Events::new(pool.clone(), options.prefix.clone()));
        let store = RedisStore {
            pool,
            prefix: options.prefix.clone(),
            views: RwLock::new(HashMap::new()),
            write: redis::Script::new(WRITE),
            events: events.clone(),
            flusher: Mutex::new(None),
        };
        store.with(|con| {
            let mut setting = |name: &str| -> redis::RedisResult<String> {
                let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con)?;
                // An unknown setting reads as empty, which is refused below.
                Ok(pair.get(1).cloned().unwrap_or_default())
            };
            match (setting("appendonly"), setting("appendfsync")) {
                (Ok(only), Ok(fsync)) if only == "yes" && fsync == "always" => Ok(()),
                _ if !options.require_fsync => {
                    tracing::warn!(
                        "redis does not fsync every write (appendonly yes, appendfsync always): a write acknowledged just before Redis crashes can be lost"
                    );
                    Ok(())
                }
                (Ok(only), Ok(fsync)) => Err(Error::NotDurable(format!(
                    "redis at {} has appendonly {only} and appendfsync {fsync}: an acknowledged write could be lost in a crash. Set `appendonly yes` and `appendfsync always`, or accept the risk explicitly",
                    options.url
                ))),
                (Err(e), _) | (_, Err(e)) => Err(Error::NotDurable(format!(
                    "redis at {}: cannot read its persistence settings ({e}); accept the risk explicitly to use it anyway",
                    options.url
                ))),
            }
        })?;
        let views_key = format!("{}:views", store.prefix);
        store.with(|con| {
            for schema in views {
                redis::cmd("HSETNX")
                    .arg(&views_key)
                    .arg(&schema.name)
                    .arg(format!("{:016x}", schema.fingerprint()))
                    .query::<()>(con)
                    .map_err(unavailable("recording a view"))?;
            }
            Ok(())
        })?;
        store.declare(views);
        let (stop, stopped) = channel::<()>();
        let interval = options.event_flush_interval;
        let thread = std::thread::Builder::new()
            .name("skewless-redis-flush".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    // Another server flushing a source is left to it.
                    if let Err(e) = events.flush_all(false) {
                        tracing::warn!(error = %e, "flushing pushed events to the offline log failed; the next flush retries, nothing is lost");
                    }
                }
            })
            .map_err(|e| Error::Unavailable(format!("starting the event flusher: {e}")))?;
        *store.flusher.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, thread));
        tracing::info!(url = %options.url, prefix = %options.prefix, views = views.len(), "online store in redis");
        Ok(store)
    }

    /// Deletes every key under `options.prefix`, for a tool that owns its prefix (the
    /// quickstart wipes its earlier run's store like its directory): allowed when the
    /// prefix holds no key, or holds `{prefix}:owner` set to `owner` by an earlier call;
    /// refused otherwise, naming the prefix. Leaves `{prefix}:owner` set to `owner`.
    pub fn reset_owned(options: &RedisOptions, owner: &str) -> Result<()> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| Error::Unavailable(format!("redis: cannot use `{}`: {e}", options.url)))?;
        let pool = Pool {
            client,
            idle: Mutex::new(Vec::new()),
        };
        let head = format!("{}:", options.prefix);
        let owner_key = format!("{head}owner");
        pool.with(|con| {
            let held: Option<String> = redis::cmd("GET")
                .arg(&owner_key)
                .query(con)
                .map_err(unavailable("reading the prefix's owner"))?;
            if held.as_deref() != Some(owner) && any_key(con, &head)? {
                return Err(Error::Unsupported(format!(
                    "redis prefix `{}` holds keys that {owner} did not make; pass another --redis-prefix",
                    options.prefix
                )));
            }
            unlink_matching(con, &head, None)?;
            redis::cmd("SET")
                .arg(&owner_key)
                .arg(owner)
                .query::<()>(con)
                .map_err(unavailable("recording the prefix's owner"))
        })
    }

    /// Runs `f` on a pooled connection.
    fn with<T>(&self, f: impl FnOnce(&mut redis::Connection) -> Result<T>) -> Result<T> {
        self.pool.with(f)
    }

    /// The Redis keys of `view`'s rows under `fingerprint`: one call per batch of keys.
    fn row_keys(&self, view: &str, fingerprint: u64) -> impl Fn(&[u8]) -> Vec<u8> + use<> {
        let head = format!("{}:", self.key("row", view, fingerprint)).into_bytes();
        move |key| [head.as_slice(), key].concat()
    }

    /// `{prefix}:{what}:{view}:{fingerprint}`: a counter, or the head of the row keys.
    fn key(&self, what: &str, view: &str, fingerprint: u64) -> String {
        format!("{}:{what}:{view}:{fingerprint:016x}", self.prefix)
    }

    /// Makes `views` the ones this store reads and writes.
    fn declare(&self, views: &[ViewSchema]) {
        let mut current = self.views.write().unwrap_or_else(|e| e.into_inner());
        *current = views
            .iter()
            .map(|s| {
                let view = View {
                    fingerprint: s.fingerprint(),
                    dtypes: s.dtypes(),
                };
                (s.name.clone(), view)
            })
            .collect();
    }

    fn view(&self, name: &str) -> Result<View> {
        self.views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownView(name.to_owned()))
    }

    /// Deletes every row and counter of `view` except those under `keep`.
    fn drop_rows(&self, con: &mut redis::Connection, view: &str, keep: Option<u64>) -> Result<u64> {
        let mut dropped = 0u64;
        for what in ["row", "rows", "bytes"] {
            // View names are identifiers (no `:`), so this matches `view`'s keys only.
            let head = format!("{}:{what}:{view}:", self.prefix);
            let kept = keep.map(|fp| self.key(what, view, fp));
            dropped += unlink_matching(con, &head, kept.as_deref())?;
        }
        Ok(dropped)
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let flusher = self
            .flusher
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, thread)) = flusher {
            drop(stop);
            let _ = thread.join();
        }
        // What is left stays in Redis, durable, for the next flush by any server.
        if let Err(e) = self.events.flush_all(false) {
            tracing::warn!(error = %e, "flushing pushed events at close failed; they stay in redis");
        }
    }
}

impl OnlineStore for RedisStore {
    fn set_views(&self, views: &[ViewSchema]) -> Result<()> {
        let views_key = format!("{}:views", self.prefix);
        self.with(|con| {
            let held: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&views_key)
                .query(con)
                .map_err(unavailable("reading the views"))?;
            for schema in views {
                let fingerprint = schema.fingerprint();
                let hex = format!("{fingerprint:016x}");
                if held.get(&schema.name) != Some(&hex) {
                    let dropped = self.drop_rows(con, &schema.name, Some(fingerprint))?;
                    if dropped > 0 {
                        tracing::info!(view = %schema.name, keys = dropped, "the view's features changed: its rows are dropped");
                    }
                    redis::cmd("HSET")
                        .arg(&views_key)
                        .arg(&schema.name)
                        .arg(&hex)
                        .query::<()>(con)
                        .map_err(unavailable("recording a view"))?;
                }
            }
            for name in held.keys() {
                if !views.iter().any(|v| &v.name == name) {
                    self.drop_rows(con, name, None)?;
                    redis::cmd("HDEL")
                        .arg(&views_key)
                        .arg(name)
                        .query::<()>(con)
                        .map_err(unavailable("forgetting a view"))?;
                }
            }
            Ok(())
        })?;
        self.declare(views);
        Ok(())
    }

    fn write(&self, view_name: &str, batch: WriteBatch) -> Result<()> {
        let view = self.view(view_name)?;
        let rows = row::encode_batch(view_name, &view.dtypes, batch)?;
        let row_key = self.row_keys(view_name, view.fingerprint);
        let counters = [
            self.key("rows", view_name, view.fingerprint),
            self.key("bytes", view_name, view.fingerprint),
        ];
        self.with(|con| {
            for chunk in rows.chunks(ROWS_PER_CALL) {
                let mut call = self.write.prepare_invoke();
                call.key(&counters[0]).key(&counters[1]);
                for (key, row) in chunk {
                    call.key(row_key(key)).arg(&**row);
                }
                call.invoke::<u64>(con)
                    .map_err(unavailable("writing rows"))?;
            }
            Ok(())
        })
    }

    fn read(
        &self,
        view_name: &str,
        fingerprint: u64,
        keys: &[&[u8]],
        at: i64,
        out: &mut ViewColumnsBuilder,
    ) -> Result<()> {
        if let Some(read) = self.events.read(view_name, fingerprint, keys, at, out) {
            return read;
        }
        let view = self.view(view_name)?;
        if view.fingerprint != fingerprint {
            return Err(Error::SchemaChanged(view_name.to_owned()));
        }
        if keys.is_empty() {
            return Ok(());
        }
        let row_key = self.row_keys(view_name, fingerprint);
        let stored: Vec<Option<Vec<u8>>> = self.with(|con| {
            let mut mget = redis::cmd("MGET");
            for key in keys {
                mget.arg(row_key(key));
            }
            mget.query(con).map_err(unavailable("reading rows"))
        })?;
        if stored.len() != keys.len() {
            return Err(Error::Unavailable(format!(
                "redis: asked for {} rows, got {}",
                keys.len(),
                stored.len()
            )));
        }
        if stored
            .iter()
            .flatten()
            .any(|bytes| !row::fits(bytes, view.dtypes.len()))
        {
            return Err(Error::Unavailable(format!(
                "redis: a key of view `{view_name}` holds a value that is not one of its rows (under prefix `{}`, written by something else?)",
                self.prefix
            )));
        }
        for bytes in &stored {
            row::push(out, bytes.as_deref(), &view.dtypes, at).map_err(|reason| {
                Error::CorruptRow {
                    view: view_name.to_owned(),
                    reason: format!("{reason} (under prefix `{}`)", self.prefix),
                }
            })?;
        }
        Ok(())
    }

    fn blocks(&self) -> bool {
        true
    }

    fn set_event_sources(
        &self,
        sources: &[EventSchema],
        history: History,
        rebuild: &[String],
    ) -> Result<()> {
        self.events.declare(sources, history, rebuild)
    }

    fn keeps_aggregates(&self) -> bool {
        true
    }

    fn append_events(&self, source: &str, batch: EventBatch) -> Result<usize> {
        self.events.append(source, batch)
    }

    fn flush_events(&self) -> Result<()> {
        self.events.flush_all(true).map(|_| ())
    }

    fn stats(&self) -> StoreStats {
        let mut views: Vec<(String, u64)> = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, v)| (name.clone(), v.fingerprint))
            .collect();
        views.sort();
        let counts = self.with(|con| {
            let mut mget = redis::cmd("MGET");
            for (name, fingerprint) in &views {
                mget.arg(self.key("rows", name, *fingerprint)).arg(self.key(
                    "bytes",
                    name,
                    *fingerprint,
                ));
            }
            if views.is_empty() {
                return Ok(Vec::new());
            }
            mget.query::<Vec<Option<u64>>>(con)
                .map_err(unavailable("reading counters"))
        });
        let unflushed = self
            .with(|con| self.events.unflushed(con))
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "event counters unavailable");
                0
            });
        // Unknown counts are left out (no gauge, `online_rows: null`), never shown as 0.
        let counts = match counts {
            Ok(counts) if counts.len() == 2 * views.len() => counts,
            Ok(counts) => {
                tracing::warn!(
                    asked = 2 * views.len(),
                    got = counts.len(),
                    "redis answered another number of counters"
                );
                return StoreStats::default();
            }
            Err(e) => {
                tracing::debug!(error = %e, "store counters unavailable");
                return StoreStats::default();
            }
        };
        // A counter not yet written is a view without rows.
        let count = |i: usize| counts[i].unwrap_or(0);
        StoreStats {
            rows: views
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.clone(), count(2 * i)))
                .collect(),
            bytes: views
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.clone(), count(2 * i + 1)))
                .collect(),
            events_unflushed: unflushed,
            ..StoreStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_are_literal() {
        assert_eq!(glob_literal("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_literal("skewless"), "skewless");
    }
}
