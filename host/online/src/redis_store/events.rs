//! Event sources in Redis: aggregate timelines shared by every server on the store, and
//! each source's pushed events kept in a Redis stream until they are in its offline log.
//!
//! Layout, under the store's prefix:
//!
//! ```text
//! {prefix}:aggviews                            hash: aggregated view -> fingerprint of
//!                                              the complete tiles held
//! {prefix}:tl:{view}:{fingerprint}:{key}       one entity's version, then its sealed
//!                                              timeline (the kernel's byte form: hop tiles)
//! {prefix}:raw:{view}:{fingerprint}:{key}      list: its raw recent events, one each
//! {prefix}:busy:{view}:{fingerprint}:{key}     pushes of the entity's events in flight
//!                                              (a counter that expires)
//! {prefix}:events:{source}                     stream: one entry per pushed chunk, until
//!                                              flushed to the offline log
//! {prefix}:unflushed:{source}                  events in that stream (a counter)
//! {prefix}:rebuilding:{source}                 set while a server rebuilds its tiles
//! {prefix}:flushing:{source}                   lock of the server writing its offline log
//! ```
//!
//! Each stored timeline starts with its version (8 bytes). A push is one optimistic commit
//! per chunk: read the chunk's timelines, fold the events in with the kernel, then run one
//! script ([`COMMIT`]) that writes the new timelines (or, when the events only add to an
//! entity's raw recent ones, appends them to its list), the stream entry and the counters
//! only if every timeline still has the version it was read at (and, where one is
//! rewritten, its list the length it was read at). A script runs whole or
//! not at all (and, with `appendfsync always`, is on disk before the answer), so an
//! acknowledged event is in the tiles and in the stream, and one that is not acknowledged
//! is in neither: no loss, no double count, whichever server crashes where. When another
//! push changed some of the timelines first, the script writes nothing and names them;
//! only those are read and folded again. Within one server, concurrent pushes to a source
//! are committed together by one thread (their batches nearly always share entities, and
//! would otherwise conflict with each other).
//!
//! Arrivals: before a push stamps its events' arrival it counts them in flight on their
//! entities (`busy`); a read of an entity with events in flight waits for them, as in
//! the local store, so that no read at `t` misses an event that arrived before `t`.
//! Servers sharing a store must keep their clocks in sync (NTP) for that to hold across
//! servers: each stamps with its own clock.
//!
//! The offline log: a flush (every `--event-flush-secs`, before a backfill, before a
//! rebuild) takes the source's lock, writes the stream's entries to Parquet files named
//! by their entry IDs, then trims them from the stream. Entry IDs already in a file name
//! are trimmed without being written again, so a flush interrupted anywhere is repeated
//! without duplicates. Servers sharing a store write one offline log: the source's `path`
//! must be the same shared directory for all of them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use skewless_aggregate::Timeline;
use skewless_core::DType;
use skewless_core::assemble::{Value, ViewColumnsBuilder};
use skewless_core::key::KeyBuf;
use skewless_core::now_micros;

use super::{Pool, unavailable, unlink_matching};
use crate::events::{EventBatch, EventSchema, EventView, History};
use crate::offline_log::{self, LogSchema};
use crate::{Error, Result, row, wal};

/// Events per push transaction.
const EVENTS_PER_CALL: usize = 2_000;
/// Timelines written per call when tiles are rebuilt.
const TIMELINES_PER_CALL: usize = 1_000;
/// Stream entries read per call when flushing.
const ENTRIES_PER_CALL: usize = 256;
/// Events per offline log file, at most (a file ends at an entry's end).
const EVENTS_PER_FILE: usize = 1_000_000;
/// How long an in-flight mark outlives a server that crashed holding it.
const BUSY_MILLIS: u64 = 10_000;
/// How long the rebuild flag outlives the last sign of life of the server rebuilding.
const REBUILD_MILLIS: u64 = 600_000;
/// How long a read waits for in-flight pushes, and a push retries conflicts.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a flush that must complete waits for another server's.
const FLUSH_PATIENCE: Duration = Duration::from_secs(300);

/// Releases a lock only if it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Commits a push chunk if every timeline it was computed from is still stored: checks
/// the rebuild flag (-1 if set) and the views' fingerprints (-2 if another), then each
/// timeline's version (its first 8 bytes; none for a timeline not stored yet) and, for one
/// rewritten whole, the length of its raw list. On any mismatch it writes nothing and
/// answers 1 and the positions that changed. Otherwise, per entity, it appends the new
/// raw events to its list (`a`), or replaces its sealed form and its list (`r`); then it
/// writes the stream entry and the counter, releases the in-flight marks and answers 0.
///
/// KEYS: aggviews, rebuilding, stream, unflushed, the n (timeline, raw list) pairs, the m
/// marks. ARGV: n, m, v, the v view names, their v fingerprints; per entity its mode,
/// version, list length, sealed form, count of raw events and those events; then the log
/// layout, the events and their count.
const COMMIT: &str = r"
local n, m, v = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1} end
for i = 1, v do
  if redis.call('HGET', KEYS[1], ARGV[3 + i]) ~= ARGV[3 + v + i] then return {-2} end
end
local at = 4 + 2 * v
local starts = {}
local changed = {1}
for i = 1, n do
  starts[i] = at
  local stale = redis.call('GETRANGE', KEYS[3 + 2 * i], 0, 7) ~= ARGV[at + 1]
  if not stale and ARGV[at] == 'r' then
    stale = redis.call('LLEN', KEYS[4 + 2 * i]) ~= tonumber(ARGV[at + 2])
  end
  if stale then changed[#changed + 1] = i end
  at = at + 5 + tonumber(ARGV[at + 4])
end
if #changed > 1 then return changed end
for i = 1, n do
  local s, tl, raw = starts[i], KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  if ARGV[s] == 'r' then
    redis.call('SET', tl, ARGV[s + 3])
    if ARGV[s + 2] ~= '0' then redis.call('DEL', raw) end
  end
  for j = 1, tonumber(ARGV[s + 4]) do redis.call('RPUSH', raw, ARGV[s + 4 + j]) end
end
redis.call('XADD', KEYS[3], '*', 'log', ARGV[at], 'rows', ARGV[at + 1])
redis.call('INCRBY', KEYS[4], ARGV[at + 2])
for i = 1, m do redis.call('DECR', KEYS[4 + 2 * n + i]) end
return {0}
";

/// Extends a lock only if it is still the caller's; 0 if it is not.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// One online aggregated view, as declared here.
#[derive(Debug)]
struct View {
    view: Arc<EventView>,
    /// The view's fingerprint and its log's layout: tiles held under another are rebuilt.
    fingerprint: u64,
}

/// One event source, as declared here.
#[derive(Debug)]
struct Source {
    schema: EventSchema,
    /// The offline log's layout, encoded once: every stream entry carries it.
    log_bytes: Vec<u8>,
    dtypes: Vec<DType>,
    views: Vec<View>,
    /// This server's chunks waiting to be committed to the source. Batches of many
    /// entities nearly always share one, so concurrent commits of them would conflict and
    /// redo their work: one thread at a time commits every chunk waiting, together
    /// (other servers' commits can still conflict; the versions catch those).
    committing: Mutex<Queue>,
}

/// Per view, each event's entity key (none for a null key).
type Entities = Vec<Vec<Option<Box<[u8]>>>>;

/// What a commit does with one entity's stored timeline.
#[derive(Debug, Default)]
struct Plan {
    /// Rewrite its sealed form and its raw list (else: append to the list).
    rewrite: bool,
    /// The version it was read at (empty: not stored yet).
    version: Vec<u8>,
    /// The length of its raw list when read (for a rewrite).
    length: usize,
    /// The new sealed form, after its next version (for a rewrite).
    sealed: Vec<u8>,
    /// The raw events to append, or (for a rewrite) the whole new list.
    raw: Vec<Vec<u8>>,
}

/// A chunk waiting for this server's next commit to its source.
struct Waiting {
    chunk: Vec<Box<[u8]>>,
    entities: Entities,
    busy: Vec<Vec<u8>>,
    done: SyncSender<Turn>,
}

/// What a waiting chunk's pusher is told.
enum Turn {
    /// Its chunk was committed, or failed with others.
    Done(Result<()>),
    /// It commits next, its own chunk and every other waiting.
    Lead,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A thread is committing.
    active: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("waiting", &self.waiting.len())
            .field("active", &self.active)
            .finish()
    }
}

/// Hands the lead to the next waiting pusher when the leader is done, even if it fails.
struct Leading<'a>(&'a Mutex<Queue>);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match queue.waiting.first() {
            Some(next) => {
                let _ = next.done.send(Turn::Lead);
            }
            None => queue.active = false,
        }
    }
}

/// `e` again, for each pusher of a group commit that failed.
fn shared(e: &Error) -> Error {
    match e {
        Error::SourceChanged(source) => Error::SourceChanged(source.clone()),
        other => match other.fault() {
            skewless_core::Fault::Unavailable => Error::Unavailable(other.to_string()),
            _ => Error::Internal(other.to_string()),
        },
    }
}

/// Per view, the distinct entities of `entities`.
fn distinct(entities: &[Vec<Option<Box<[u8]>>>]) -> Vec<(usize, Box<[u8]>)> {
    let mut touched = Vec::new();
    for (vi, keys) in entities.iter().enumerate() {
        let mut seen = HashSet::new();
        for k in keys.iter().flatten() {
            if seen.insert(k) {
                touched.push((vi, k.clone()));
            }
        }
    }
    touched
}

/// The event sources and aggregated views of a Redis store.
pub(crate) struct Events {
    pool: Arc<Pool>,
    prefix: String,
    sources: RwLock<HashMap<String, Arc<Source>>>,
    /// Aggregated view -> its source, and its index among the source's views.
    views: RwLock<HashMap<String, (Arc<Source>, usize)>>,
    release: redis::Script,
    extend: redis::Script,
    commit: redis::Script,
}

/// A stored timeline: its version (the first 8 bytes), and the timeline of the sealed
/// form after them with the raw events of its list.
fn versioned<'b>(
    bytes: &'b [u8],
    raw: &[Vec<u8>],
    spec: &skewless_aggregate::Spec,
) -> Result<(&'b [u8], Timeline), String> {
    if bytes.len() < 8 {
        return Err("a stored timeline shorter than its version".into());
    }
    let (version, rest) = bytes.split_at(8);
    let timeline = Timeline::with_recent(spec, rest, raw.iter().map(|r| r.as_slice()))
        .map_err(|reason| format!("a stored timeline: {reason}"))?;
    Ok((version, timeline))
}

/// An entry ID `ms-seq` as one number, ordered as the IDs are: the offline log's file
/// names hold these.
fn entry_number(id: &str) -> Option<(u64, u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    if ms >> 43 != 0 || seq >> 20 != 0 {
        return None;
    }
    Some(((ms << 20) | seq, ms, seq))
}

impl Events {
    pub(crate) fn new(pool: Arc<Pool>, prefix: String) -> Self {
        Self {
            pool,
            prefix,
            sources: RwLock::default(),
            views: RwLock::default(),
            release: redis::Script::new(RELEASE),
            extend: redis::Script::new(EXTEND),
            commit: redis::Script::new(COMMIT),
        }
    }

    fn key(&self, what: &str, name: &str) -> String {
        format!("{}:{what}:{name}", self.prefix)
    }

    /// The hash of aggregated views and the fingerprints of their complete tiles.
    fn aggviews(&self) -> String {
        format!("{}:aggviews", self.prefix)
    }

    /// The key of one entity's `what` (`tl`, `raw`, `busy`) in `view`.
    fn entity_key(&self, what: &str, view: &View, entity: &[u8]) -> Vec<u8> {
        let head = format!(
            "{}:{what}:{}:{:016x}:",
            self.prefix,
            view.view.name(),
            view.fingerprint
        );
        [head.as_bytes(), entity].concat()
    }

    /// The declared sources.
    fn sources(&self) -> Vec<Arc<Source>> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Declares `schemas`: the tiles of a view that are held under its fingerprint are
    /// kept (unless `rebuild` names it); the others are built from `history`, after the
    /// source's stream is flushed into it. Pushes to a source being rebuilt, and reads of
    /// its rebuilding views, are refused with a retryable error until the new tiles are in.
    pub(crate) fn declare(
        &self,
        schemas: &[EventSchema],
        history: History,
        rebuild: &[String],
    ) -> Result<()> {
        let aggviews = &self.aggviews();
        let held: HashMap<String, String> = self.pool.with(|con| {
            redis::cmd("HGETALL")
                .arg(aggviews)
                .query(con)
                .map_err(unavailable("reading the aggregated views"))
        })?;
        let sources: Vec<Arc<Source>> = schemas
            .iter()
            .map(|schema| {
                let log = LogSchema::of(schema);
                let mut log_bytes = Vec::new();
                log.encode(&mut log_bytes);
                let views = schema
                    .views
                    .iter()
                    .map(|v| {
                        let mut shape = format!("{:016x};", v.fingerprint()).into_bytes();
                        shape.extend_from_slice(&log_bytes);
                        View {
                            fingerprint: skewless_core::key::fnv1a(&shape),
                            view: v.clone(),
                        }
                    })
                    .collect();
                Arc::new(Source {
                    committing: Mutex::default(),
                    dtypes: log.dtypes(),
                    schema: schema.clone(),
                    log_bytes,
                    views,
                })
            })
            .collect();
        for source in &sources {
            let stale: Vec<&View> = source
                .views
                .iter()
                .filter(|v| {
                    held.get(v.view.name()) != Some(&format!("{:016x}", v.fingerprint))
                        || rebuild.iter().any(|r| r == v.view.name())
                })
                .collect();
            if !stale.is_empty() {
                self.rebuild(source, &stale, &history, aggviews)?;
            }
        }
        let declared: HashSet<&str> = sources
            .iter()
            .flat_map(|s| s.views.iter().map(|v| v.view.name()))
            .collect();
        for name in held.keys().filter(|n| !declared.contains(n.as_str())) {
            self.pool.with(|con| {
                for what in ["tl", "raw", "busy"] {
                    unlink_matching(con, &format!("{}:{what}:{name}:", self.prefix), None)?;
                }
                redis::cmd("HDEL")
                    .arg(aggviews)
                    .arg(name)
                    .query::<()>(con)
                    .map_err(unavailable("forgetting an aggregated view"))
            })?;
        }
        let mut by_view = HashMap::new();
        for source in &sources {
            for (i, v) in source.views.iter().enumerate() {
                by_view.insert(v.view.name().to_owned(), (source.clone(), i));
            }
        }
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = sources
            .into_iter()
            .map(|s| (s.schema.source.clone(), s))
            .collect();
        *self.views.write().unwrap_or_else(|e| e.into_inner()) = by_view;
        Ok(())
    }

    /// Builds `stale` views of `source` from its offline log, made current first.
    fn rebuild(
        &self,
        source: &Source,
        stale: &[&View],
        history: &History,
        aggviews: &str,
    ) -> Result<()> {
        let name = &source.schema.source;
        let rebuilding = self.key("rebuilding", name);
        // Pushes watch this flag and the fingerprints: from here on none of the source's
        // commits, so the flush below leaves no event outside the history.
        self.pool.with(|con| {
            let mut block = redis::pipe();
            block
                .atomic()
                .cmd("SET")
                .arg(&rebuilding)
                .arg(1)
                .arg("PX")
                .arg(REBUILD_MILLIS)
                .ignore();
            for v in stale {
                block.cmd("HDEL").arg(aggviews).arg(v.view.name()).ignore();
            }
            block
                .query::<()>(con)
                .map_err(unavailable("starting a rebuild"))
        })?;
        self.flush(source, true)?;
        let now = now_micros();
        for v in stale {
            let started = Instant::now();
            let view = &v.view;
            let since = now
                .saturating_sub(view.aggregates.reach())
                .saturating_sub(view.aggregates.spec.hop);
            let events = history(&source.schema, view, since).map_err(|reason| Error::History {
                view: view.name().to_owned(),
                reason,
            })?;
            let count = events.len();
            let timelines: Vec<(Box<[u8]>, Timeline)> =
                view.timelines(events, now).into_iter().collect();
            let spec = &view.aggregates.spec;
            // A version no timeline held before: a push computed from one is refused.
            let version = (now as u64) << 1 | 1;
            self.pool.with(|con| {
                for what in ["tl", "raw", "busy"] {
                    unlink_matching(
                        con,
                        &format!("{}:{what}:{}:", self.prefix, view.name()),
                        None,
                    )?;
                }
                let mut bytes = Vec::new();
                for chunk in timelines.chunks(TIMELINES_PER_CALL) {
                    let mut set = redis::pipe();
                    for (key, timeline) in chunk {
                        bytes.clear();
                        bytes.extend_from_slice(&version.to_le_bytes());
                        timeline.encode_sealed(spec, &mut bytes);
                        set.cmd("SET")
                            .arg(self.entity_key("tl", v, key))
                            .arg(&bytes)
                            .ignore();
                        if !timeline.recent().is_empty() {
                            let mut push = redis::cmd("RPUSH");
                            push.arg(self.entity_key("raw", v, key));
                            for e in timeline.recent() {
                                let mut one = Vec::new();
                                e.encode_bytes(&mut one);
                                push.arg(one);
                            }
                            set.add_command(push).ignore();
                        }
                    }
                    // Still rebuilding: the flag outlives only a server that crashed.
                    set.cmd("PEXPIRE")
                        .arg(&rebuilding)
                        .arg(REBUILD_MILLIS)
                        .ignore();
                    set.query::<()>(con)
                        .map_err(unavailable("writing rebuilt tiles"))?;
                }
                redis::cmd("HSET")
                    .arg(aggviews)
                    .arg(view.name())
                    .arg(format!("{:016x}", v.fingerprint))
                    .query::<()>(con)
                    .map_err(unavailable("recording rebuilt tiles"))
            })?;
            tracing::info!(
                view = view.name(),
                events = count,
                keys = timelines.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "aggregate tiles in redis built from the offline log"
            );
        }
        self.pool.with(|con| {
            redis::cmd("DEL")
                .arg(&rebuilding)
                .query::<()>(con)
                .map_err(unavailable("ending a rebuild"))
        })
    }

    /// Appends events to `source_name` (see the module's docs); returns how many the
    /// arrival stamp made too late.
    pub(crate) fn append(&self, source_name: &str, batch: EventBatch) -> Result<usize> {
        let source = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(source_name)
            .cloned()
            .ok_or_else(|| Error::UnknownSource(source_name.to_owned()))?;
        let encoder = batch.encoder(source_name, &source.dtypes)?;
        let rows = batch.event_ts.len();
        let mut late = 0;
        for start in (0..rows).step_by(EVENTS_PER_CALL) {
            let end = (start + EVENTS_PER_CALL).min(rows);
            let chunk = batch.rows(&encoder, start..end);
            late += self.append_chunk(&source, chunk, batch.created_ts.is_none())?;
        }
        Ok(late)
    }

    fn append_chunk(
        &self,
        source: &Source,
        mut chunk: Vec<Box<[u8]>>,
        stamp: bool,
    ) -> Result<usize> {
        // The in-flight marks of its entities, set before the arrivals are stamped.
        let busy: Vec<Vec<u8>> = distinct(&self.entities(source, &chunk)?)
            .iter()
            .map(|(vi, k)| self.entity_key("busy", &source.views[*vi], k))
            .collect();
        if !busy.is_empty() {
            self.pool.with(|con| {
                let mut mark = redis::pipe();
                for b in &busy {
                    mark.cmd("INCR").arg(b).ignore();
                    mark.cmd("PEXPIRE").arg(b).arg(BUSY_MILLIS).ignore();
                }
                mark.query::<()>(con)
                    .map_err(unavailable("marking events in flight"))
            })?;
        }
        let result = (|| {
            // After the marks: a read at any later time waits for these events.
            let late = if stamp {
                crate::events::stamp(&mut chunk, source.schema.lateness).len()
            } else {
                0
            };
            if chunk.is_empty() {
                return Ok((late, false));
            }
            let entities = self.entities(source, &chunk)?;
            self.commit_together(source, chunk, entities, busy.clone())?;
            Ok((late, true))
        })();
        if !matches!(result, Ok((_, true))) && !busy.is_empty() {
            // No commit took the marks back (none ran, or it failed): take them back
            // here. If this fails too, they expire.
            let _ = self.pool.with(|con| {
                let mut unmark = redis::pipe();
                for b in &busy {
                    unmark.cmd("DECR").arg(b).ignore();
                }
                unmark
                    .query::<()>(con)
                    .map_err(unavailable("unmarking events"))
            });
        }
        result.map(|(late, _)| late)
    }

    /// Each event's entity in each view (none for a null key).
    fn entities(&self, source: &Source, chunk: &[Box<[u8]>]) -> Result<Entities> {
        let mut key = KeyBuf::new();
        source
            .views
            .iter()
            .map(|v| {
                chunk
                    .iter()
                    .map(|row| {
                        let found = v
                            .view
                            .row_key(&source.dtypes, row, &mut key)
                            .map_err(Error::Internal)?;
                        Ok(found.then(|| Box::from(key.as_bytes())))
                    })
                    .collect()
            })
            .collect()
    }

    /// Commits `chunk` with every other chunk of this server waiting for the source: the
    /// first pusher to find no commit running commits them all as one, then hands the
    /// lead to the next waiting.
    fn commit_together(
        &self,
        source: &Source,
        chunk: Vec<Box<[u8]>>,
        entities: Entities,
        busy: Vec<Vec<u8>>,
    ) -> Result<()> {
        let (done, turn) = sync_channel(2);
        let gone = || Error::Internal("a group commit ended without an answer".into());
        {
            let mut queue = source.committing.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Waiting {
                chunk,
                entities,
                busy,
                done,
            });
            if queue.active {
                drop(queue);
                match turn.recv() {
                    Ok(Turn::Done(result)) => return result,
                    Ok(Turn::Lead) => {}
                    Err(_) => return Err(gone()),
                }
            } else {
                queue.active = true;
            }
        }
        let leading = Leading(&source.committing);
        let mut group = std::mem::take(
            &mut source
                .committing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiting,
        );
        let mut chunk = Vec::new();
        let mut entities = vec![Vec::new(); source.views.len()];
        let mut busy = Vec::new();
        for w in &mut group {
            chunk.append(&mut w.chunk);
            for (all, mine) in entities.iter_mut().zip(&mut w.entities) {
                all.append(mine);
            }
            busy.append(&mut w.busy);
        }
        let touched = distinct(&entities);
        let timelines: Vec<Vec<u8>> = touched
            .iter()
            .map(|(vi, k)| self.entity_key("tl", &source.views[*vi], k))
            .collect();
        let result = self.commit(source, &chunk, &entities, &touched, &timelines, &busy);
        for w in &group {
            let _ = w.done.send(Turn::Done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(shared(e)),
            }));
        }
        drop(leading);
        match turn.recv() {
            Ok(Turn::Done(result)) => result,
            _ => Err(gone()),
        }
    }

    /// The optimistic commit of one chunk: read the timelines, fold the events in, and
    /// hand Redis the new timelines with the version each was computed from. The script
    /// writes them, the stream entry and the counters only if every version is still the
    /// stored one; otherwise it writes nothing and names the timelines that changed, which
    /// alone are read and folded again.
    fn commit(
        &self,
        source: &Source,
        chunk: &[Box<[u8]>],
        entities: &[Vec<Option<Box<[u8]>>>],
        touched: &[(usize, Box<[u8]>)],
        timelines: &[Vec<u8>],
        busy: &[Vec<u8>],
    ) -> Result<()> {
        let name = &source.schema.source;
        let aggviews = &self.aggviews();
        let rebuilding = self.key("rebuilding", name);
        let stream = self.key("events", name);
        let unflushed = self.key("unflushed", name);
        let mut entry = Vec::new();
        entry.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        for r in chunk {
            wal::put_bytes(&mut entry, r);
        }
        // Each touched timeline's events, in chunk order.
        let index: HashMap<(usize, &[u8]), usize> = touched
            .iter()
            .enumerate()
            .map(|(i, (vi, k))| ((*vi, &**k), i))
            .collect();
        let mut events_of: Vec<Vec<usize>> = vec![Vec::new(); touched.len()];
        for (vi, keys) in entities.iter().enumerate() {
            for (r, k) in keys.iter().enumerate() {
                if let Some(k) = k {
                    events_of[index[&(vi, &**k)]].push(r);
                }
            }
        }
        // Per touched entity, what the commit does with it (see `COMMIT`).
        let raw_keys: Vec<Vec<u8>> = touched
            .iter()
            .map(|(vi, k)| self.entity_key("raw", &source.views[*vi], k))
            .collect();
        let mut plans: Vec<Plan> = (0..touched.len()).map(|_| Plan::default()).collect();
        let mut stale: Vec<usize> = (0..touched.len()).collect();
        let started = Instant::now();
        let corrupt = |vi: usize| {
            let view = source.views[vi].view.name().to_owned();
            move |reason: String| Error::CorruptRow { view, reason }
        };
        self.pool.with(|con| {
            loop {
                if !stale.is_empty() {
                    let mut read = redis::pipe();
                    read.cmd("MGET");
                    for &i in &stale {
                        read.arg(&timelines[i]);
                    }
                    for &i in &stale {
                        read.cmd("LLEN").arg(&raw_keys[i]);
                    }
                    let mut replies = read
                        .query::<Vec<redis::Value>>(con)
                        .map_err(unavailable("reading timelines"))?
                        .into_iter();
                    let stored: Vec<Option<Vec<u8>>> = match replies.next() {
                        Some(v) => redis::from_redis_value(&v)
                            .map_err(unavailable("reading timelines"))?,
                        None => Vec::new(),
                    };
                    let lengths: Vec<usize> = replies
                        .map(|v| redis::from_redis_value(&v))
                        .collect::<redis::RedisResult<_>>()
                        .map_err(unavailable("reading raw lists"))?;
                    if stored.len() != stale.len() || lengths.len() != stale.len() {
                        return Err(Error::Unavailable(format!(
                            "redis: asked for {} timelines, got {}",
                            stale.len(),
                            stored.len()
                        )));
                    }
                    let now = now_micros();
                    // Entities whose sealing moves, or with events before it: rewritten
                    // whole, from their raw lists too. The others only append.
                    let mut rewrite = Vec::new();
                    for ((&i, bytes), length) in stale.iter().zip(stored).zip(lengths) {
                        let vi = touched[i].0;
                        let view = &source.views[vi].view;
                        let spec = &view.aggregates.spec;
                        let mut events = Vec::with_capacity(events_of[i].len());
                        for &r in &events_of[i] {
                            events.push(
                                view.row_event(&source.dtypes, &chunk[r])
                                    .map_err(Error::Internal)?,
                            );
                        }
                        let sealed = match &bytes {
                            None => None,
                            Some(b) => Some(versioned(b, &[], spec).map_err(corrupt(vi))?),
                        };
                        let appends = sealed.as_ref().is_some_and(|(_, t)| {
                            let until = t.sealed_until().unwrap_or(i64::MAX);
                            !t.would_seal(spec, now.saturating_sub(view.lateness))
                                && events.iter().all(|e| e.at.event >= until)
                        });
                        let plan = &mut plans[i];
                        plan.length = length;
                        plan.version = sealed.as_ref().map(|(v, _)| v.to_vec()).unwrap_or_default();
                        plan.raw.clear();
                        plan.sealed.clear();
                        if appends {
                            plan.rewrite = false;
                            for e in &events {
                                let mut one = Vec::new();
                                e.encode_bytes(&mut one);
                                plan.raw.push(one);
                            }
                        } else {
                            plan.rewrite = true;
                            let timeline = sealed.map(|(_, t)| t).unwrap_or_default();
                            rewrite.push((i, timeline, events));
                        }
                    }
                    if !rewrite.is_empty() {
                        // Only the lists that hold events are read.
                        let mut lists = redis::pipe();
                        let listed: Vec<usize> = rewrite
                            .iter()
                            .map(|(i, _, _)| *i)
                            .filter(|&i| plans[i].length > 0)
                            .collect();
                        for &i in &listed {
                            lists.cmd("LRANGE").arg(&raw_keys[i]).arg(0).arg(-1);
                        }
                        let mut lists: Vec<Vec<Vec<u8>>> = if listed.is_empty() {
                            Vec::new()
                        } else {
                            lists.query(con).map_err(unavailable("reading raw events"))?
                        };
                        if lists.len() != listed.len() {
                            return Err(Error::Unavailable(format!(
                                "redis: asked for {} raw lists, got {}",
                                listed.len(),
                                lists.len()
                            )));
                        }
                        let mut lists = lists.drain(..);
                        for (i, mut timeline, events) in rewrite {
                            let raw = if plans[i].length > 0 {
                                lists.next().unwrap_or_default()
                            } else {
                                Vec::new()
                            };
                            let vi = touched[i].0;
                            let view = &source.views[vi].view;
                            let spec = &view.aggregates.spec;
                            timeline
                                .add_recent(spec, raw.iter().map(|r| r.as_slice()))
                                .map_err(|reason| format!("a stored timeline: {reason}"))
                                .map_err(corrupt(vi))?;
                            for e in events {
                                timeline.insert(spec, e);
                            }
                            view.settle(&mut timeline, now);
                            let plan = &mut plans[i];
                            let next = match plan.version.as_slice().try_into() {
                                Ok(b) => u64::from_le_bytes(b).wrapping_add(1),
                                Err(_) => 1,
                            };
                            // The list as read (it may have grown since LLEN: the commit
                            // checks this length).
                            plan.length = raw.len();
                            plan.sealed.extend_from_slice(&next.to_le_bytes());
                            timeline.encode_sealed(spec, &mut plan.sealed);
                            for e in timeline.recent() {
                                let mut one = Vec::new();
                                e.encode_bytes(&mut one);
                                plan.raw.push(one);
                            }
                        }
                    }
                }
                let mut call = self.commit.prepare_invoke();
                call.key(aggviews)
                    .key(&rebuilding)
                    .key(&stream)
                    .key(&unflushed);
                for (t, r) in timelines.iter().zip(&raw_keys) {
                    call.key(t).key(r);
                }
                for b in busy {
                    call.key(b);
                }
                call.arg(timelines.len())
                    .arg(busy.len())
                    .arg(source.views.len());
                for v in &source.views {
                    call.arg(v.view.name());
                }
                for v in &source.views {
                    call.arg(format!("{:016x}", v.fingerprint));
                }
                for plan in &plans {
                    call.arg(if plan.rewrite { "r" } else { "a" })
                        .arg(plan.version.as_slice())
                        .arg(plan.length)
                        .arg(plan.sealed.as_slice())
                        .arg(plan.raw.len());
                    for one in &plan.raw {
                        call.arg(one.as_slice());
                    }
                }
                call.arg(&source.log_bytes).arg(&entry).arg(chunk.len());
                let answer: Vec<i64> = call
                    .invoke(con)
                    .map_err(unavailable("committing events"))?;
                match answer.first() {
                    Some(0) => return Ok(()),
                    Some(-1) => return Err(Error::SourceChanged(name.clone())),
                    Some(-2) => {
                        return Err(Error::Unavailable(format!(
                            "source `{name}`: the tiles in redis were built for other definitions of its views (another server applied them); apply the same definitions here"
                        )));
                    }
                    Some(1) => {
                        // The timelines another push changed since they were read.
                        stale = answer[1..]
                            .iter()
                            .map(|&i| i as usize - 1)
                            .filter(|&i| i < touched.len())
                            .collect();
                    }
                    _ => {
                        return Err(Error::Internal(format!(
                            "redis: the commit script answered {answer:?}"
                        )));
                    }
                }
                if started.elapsed() > PATIENCE {
                    return Err(Error::Unavailable(format!(
                        "source `{name}`: pushes of the same entities kept conflicting for {PATIENCE:?}; retry"
                    )));
                }
            }
        })
    }

    /// Every aggregate of `keys` in `view_name` as of `at` into `out`; `None` when the
    /// view is not aggregated here.
    pub(crate) fn read(
        &self,
        view_name: &str,
        fingerprint: u64,
        keys: &[&[u8]],
        at: i64,
        out: &mut ViewColumnsBuilder,
    ) -> Option<Result<()>> {
        let (source, vi) = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(view_name)
            .cloned()?;
        let v = &source.views[vi];
        if v.view.fingerprint() != fingerprint {
            return Some(Err(Error::SchemaChanged(view_name.to_owned())));
        }
        if keys.is_empty() {
            return Some(Ok(()));
        }
        Some(self.read_view(&source, v, keys, at, out))
    }

    fn read_view(
        &self,
        source: &Source,
        v: &View,
        keys: &[&[u8]],
        at: i64,
        out: &mut ViewColumnsBuilder,
    ) -> Result<()> {
        let view = &v.view;
        let aggviews = &self.aggviews();
        let rebuilding = self.key("rebuilding", &source.schema.source);
        let fingerprint = format!("{:016x}", v.fingerprint);
        let started = Instant::now();
        let stored = self.pool.with(|con| {
            loop {
                let mut read = redis::pipe();
                read.atomic();
                read.cmd("HGET").arg(aggviews).arg(view.name());
                read.cmd("EXISTS").arg(&rebuilding);
                let (mut timelines, mut busy) = (redis::cmd("MGET"), redis::cmd("MGET"));
                for k in keys {
                    timelines.arg(self.entity_key("tl", v, k));
                    busy.arg(self.entity_key("busy", v, k));
                }
                read.add_command(timelines).add_command(busy);
                for k in keys {
                    read.cmd("LRANGE")
                        .arg(self.entity_key("raw", v, k))
                        .arg(0)
                        .arg(-1);
                }
                let mut replies = read
                    .query::<Vec<redis::Value>>(con)
                    .map_err(unavailable("reading timelines"))?
                    .into_iter();
                let mut next = || {
                    replies.next().ok_or_else(|| {
                        Error::Unavailable("redis: fewer replies than reads".into())
                    })
                };
                let held: Option<String> = redis::from_redis_value(&next()?)
                    .map_err(unavailable("reading timelines"))?;
                let rebuilding_now: bool = redis::from_redis_value(&next()?)
                    .map_err(unavailable("reading timelines"))?;
                let stored: Vec<Option<Vec<u8>>> = redis::from_redis_value(&next()?)
                    .map_err(unavailable("reading timelines"))?;
                let in_flight: Vec<Option<i64>> = redis::from_redis_value(&next()?)
                    .map_err(unavailable("reading timelines"))?;
                let mut raw: Vec<Vec<Vec<u8>>> = Vec::with_capacity(keys.len());
                for _ in keys {
                    raw.push(
                        redis::from_redis_value(&next()?)
                            .map_err(unavailable("reading raw events"))?,
                    );
                }
                if held.as_deref() != Some(&fingerprint) {
                    return Err(Error::Unavailable(if rebuilding_now {
                        format!(
                            "feature view `{}`: its tiles are being rebuilt; retry",
                            view.name()
                        )
                    } else {
                        format!(
                            "feature view `{}`: the tiles in redis were built for other definitions (another server applied them); apply the same definitions here",
                            view.name()
                        )
                    }));
                }
                if stored.len() != keys.len() || in_flight.len() != keys.len() {
                    return Err(Error::Unavailable(format!(
                        "redis: asked for {} timelines, got {}",
                        keys.len(),
                        stored.len()
                    )));
                }
                if !in_flight.iter().flatten().any(|&n| n > 0) {
                    return Ok((stored, raw));
                }
                if started.elapsed() > PATIENCE {
                    return Err(Error::Unavailable(format!(
                        "feature view `{}`: a push of this entity's events has not finished in {PATIENCE:?}; retry",
                        view.name()
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })?;
        let (stored, raw) = stored;
        let spec = &view.aggregates.spec;
        let now = now_micros();
        for (bytes, raw) in stored.iter().zip(&raw) {
            let mut timeline = match bytes {
                None => Timeline::default(),
                Some(b) => {
                    versioned(b, raw, spec)
                        .map_err(|reason| Error::CorruptRow {
                            view: view.name().to_owned(),
                            reason,
                        })?
                        .1
                }
            };
            view.settle(&mut timeline, now.min(at));
            let values = timeline
                .read(spec, at, view.lateness)
                .map_err(|e| view.read_failed(at, e))?;
            out.push_row(at, at, |i| {
                values[i].as_ref().map_or(Value::Null, |v| v.value())
            });
        }
        Ok(())
    }

    /// Events pushed and not yet in their offline logs, over every declared source.
    pub(crate) fn unflushed(&self, con: &mut redis::Connection) -> Result<u64> {
        let sources = self.sources();
        if sources.is_empty() {
            return Ok(0);
        }
        let mut mget = redis::cmd("MGET");
        for s in &sources {
            mget.arg(self.key("unflushed", &s.schema.source));
        }
        let counts: Vec<Option<i64>> = mget
            .query(con)
            .map_err(unavailable("reading event counters"))?;
        Ok(counts.into_iter().flatten().map(|n| n.max(0) as u64).sum())
    }

    /// Writes every declared source's streamed events to its offline log. With `wait`,
    /// waits for a flush another server is running, so that every event acknowledged
    /// before the call is in the offline log after it; without, skips such a source.
    pub(crate) fn flush_all(&self, wait: bool) -> Result<usize> {
        let mut written = 0;
        for source in self.sources() {
            written += self.flush(&source, wait)?;
        }
        Ok(written)
    }

    fn flush(&self, source: &Source, wait: bool) -> Result<usize> {
        let name = &source.schema.source;
        let lock = self.key("flushing", name);
        let token = format!("{}-{}", std::process::id(), now_micros());
        let started = Instant::now();
        loop {
            let taken: Option<String> = self.pool.with(|con| {
                redis::cmd("SET")
                    .arg(&lock)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(FLUSH_PATIENCE.as_millis() as u64)
                    .query(con)
                    .map_err(unavailable("locking the offline log"))
            })?;
            if taken.is_some() {
                break;
            }
            if !wait {
                return Ok(0);
            }
            if started.elapsed() > FLUSH_PATIENCE {
                return Err(Error::Unavailable(format!(
                    "source `{name}`: another server has held its offline log for {FLUSH_PATIENCE:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let result = self.drain(name, &lock, &token);
        let released = self.pool.with(|con| {
            self.release
                .key(&lock)
                .arg(&token)
                .invoke::<i64>(con)
                .map_err(unavailable("unlocking the offline log"))
        });
        let written = result?;
        released?;
        if written > 0 {
            tracing::debug!(source = %name, events = written, "events flushed to the offline log");
        }
        Ok(written)
    }

    /// Moves the stream's entries into offline log files, then out of the stream, while
    /// `lock` is held with `token` (extended as it goes; a flush that lost it stops).
    fn drain(&self, name: &str, lock: &str, token: &str) -> Result<usize> {
        let stream = self.key("events", name);
        let unflushed = self.key("unflushed", name);
        let mut through: HashMap<PathBuf, u64> = HashMap::new();
        let mut cursor = "-".to_owned();
        let mut batch: Option<(LogSchema, Vec<Box<[u8]>>)> = None;
        // The last entry read, and the events read since the last trim.
        let mut last: Option<(u64, u64)> = None;
        let mut since_trim = 0u64;
        let mut written = 0;
        let trim = |last: (u64, u64), events: u64| -> Result<()> {
            self.pool.with(|con| {
                redis::pipe()
                    .atomic()
                    .cmd("XTRIM")
                    .arg(&stream)
                    .arg("MINID")
                    .arg(format!("{}-{}", last.0, last.1 + 1))
                    .ignore()
                    .cmd("DECRBY")
                    .arg(&unflushed)
                    .arg(events)
                    .ignore()
                    .query::<()>(con)
                    .map_err(unavailable("trimming the event stream"))
            })
        };
        let write = |batch: &mut Option<(LogSchema, Vec<Box<[u8]>>)>| -> Result<usize> {
            match batch.take() {
                Some((log, rows)) if !rows.is_empty() => {
                    offline_log::write(&log, &rows)?;
                    Ok(rows.len())
                }
                _ => Ok(0),
            }
        };
        loop {
            type Entry = (String, Vec<Vec<u8>>);
            let entries: Vec<Entry> = self.pool.with(|con| {
                redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&cursor)
                    .arg("+")
                    .arg("COUNT")
                    .arg(ENTRIES_PER_CALL)
                    .query(con)
                    .map_err(unavailable("reading the event stream"))
            })?;
            if entries.is_empty() {
                break;
            }
            let held: i64 = self.pool.with(|con| {
                self.extend
                    .key(lock)
                    .arg(token)
                    .arg(FLUSH_PATIENCE.as_millis() as u64)
                    .invoke(con)
                    .map_err(unavailable("extending the offline log's lock"))
            })?;
            if held == 0 {
                return Err(Error::Unavailable(format!(
                    "source `{name}`: this server's flush lost its lock to another; it stops, and the next flush goes on"
                )));
            }
            for (id, fields) in entries {
                cursor = format!("({id}");
                let corrupt = |reason: &str| Error::Corrupt {
                    path: PathBuf::from(format!("redis stream {stream}")),
                    reason: format!("entry {id}: {reason}"),
                };
                let (number, ms, seq) =
                    entry_number(&id).ok_or_else(|| corrupt("an ID out of range"))?;
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|f| f.len() == 2 && f[0] == name.as_bytes())
                        .map(|f| f[1].as_slice())
                };
                let log = field("log")
                    .and_then(|b| LogSchema::decode(&mut wal::Cursor(b)))
                    .ok_or_else(|| corrupt("no log layout"))?;
                let mut c = wal::Cursor(field("rows").ok_or_else(|| corrupt("no events"))?);
                let n = c.u32().ok_or_else(|| corrupt("no event count"))?;
                let mut rows = Vec::with_capacity(n.min(EVENTS_PER_CALL));
                for _ in 0..n {
                    let mut r = c.bytes().ok_or_else(|| corrupt("cut short"))?;
                    if !row::fits(&r, log.columns.len()) {
                        return Err(corrupt("an event shorter than its layout"));
                    }
                    row::set_lsn(&mut r, number);
                    rows.push(r);
                }
                let flushed = match through.get(&log.dir) {
                    Some(n) => *n,
                    None => {
                        let n = offline_log::flushed_through(&log.dir)?;
                        through.insert(log.dir.clone(), n);
                        n
                    }
                };
                let full = batch.as_ref().is_some_and(|(l, r)| {
                    *l != log || (r.len() + rows.len() > EVENTS_PER_FILE && !r.is_empty())
                });
                if full {
                    written += write(&mut batch)?;
                    if let Some(at) = last {
                        trim(at, since_trim)?;
                        since_trim = 0;
                    }
                }
                since_trim += n as u64;
                last = Some((ms, seq));
                // Already in a file (a flush that stopped before its trim): trim only.
                if number <= flushed {
                    continue;
                }
                batch
                    .get_or_insert_with(|| (log, Vec::new()))
                    .1
                    .extend(rows);
            }
        }
        written += write(&mut batch)?;
        if let Some(at) = last {
            trim(at, since_trim)?;
        }
        Ok(written)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
