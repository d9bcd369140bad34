//! The per-call sandbox: what a guest sees of the world, and the limits it runs under.
//!
//! Language runtimes (Rust std, CPython, ...) import WASI 0.2 even when the transform never
//! touches a file or a clock. We link those interfaces, but the context behind them is
//! deterministic and empty: no preopened directories, no environment or arguments, stdin
//! closed, no network (every address denied, no name lookup), clocks frozen at the Unix
//! epoch, and every random source a constant-seed generator. So a result can depend on the
//! input batch alone.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The seed of every random source a guest can read.
pub const RANDOM_SEED: u64 = 0x5eed_1e55_0000_0001;
/// How much of a guest's stderr is kept for error messages (a panic message, say).
pub const STDERR_CAPTURE_BYTES: usize = 4096;
/// The most table elements a guest may grow a table to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The data of one call's `Store`: its WASI context and its limiter. Built fresh for every
/// call and dropped after it, so nothing a guest does outlives the call.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) stderr: StderrTail,
}

impl CallState {
    pub(crate) fn new(memory_limit: usize) -> Self {
        let stderr = StderrTail::default();
        let mut builder = WasiCtx::builder();
        builder
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(ConstantRng::new(RANDOM_SEED))
            .insecure_random(ConstantRng::new(RANDOM_SEED ^ 1))
            .insecure_random_seed(u128::from(RANDOM_SEED))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false);
        Self {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: CallLimiter {
                memory_limit,
                exceeded: None,
            },
            stderr,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps one call's linear memory and remembers whether the guest hit the cap, so that
/// the trap that usually follows (an allocator abort) is reported as what it is.
pub(crate) struct CallLimiter {
    memory_limit: usize,
    /// The size the guest asked for when it first went over the cap.
    pub(crate) exceeded: Option<usize>,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.exceeded.get_or_insert(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The WASI interface whose timers [`link_frozen_timers`] replaces (guests importing an
/// older 0.2 minor version are served by it too).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces WASI's timers so that a sleep returns at once. The clocks are frozen, so there
/// is nothing to wait for; and a guest blocked in a host call (`std::thread::sleep`, a
/// `poll` on a timer) is out of the epoch deadline's reach: a 120 s sleep held its call,
/// and its instance slot, for 120 s. Every `subscribe-duration` and `subscribe-instant`
/// pollable is ready when made, so the guest runs on, in its own code, where the deadline
/// stops it if it keeps waiting.
pub(crate) fn link_frozen_timers(
    linker: &mut wasmtime::component::Linker<CallState>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(
            name,
            |mut store: wasmtime::StoreContextMut<'_, CallState>, (_when,): (u64,)| {
                let table = &mut store.data_mut().table;
                let elapsed = table.push(Elapsed)?;
                Ok((wasmtime_wasi::p2::subscribe(table, elapsed)?,))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// A timer on a frozen clock: already elapsed.
struct Elapsed;

#[async_trait::async_trait]
impl Pollable for Elapsed {
    async fn ready(&mut self) {}
}

/// A clock stopped at the Unix epoch: "now" is an input column, never a clock read.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// SplitMix64 from a constant seed: the same bytes for every call on every host.
struct ConstantRng(u64);

impl ConstantRng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl rand_core::TryRng for ConstantRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// Keeps the first [`STDERR_CAPTURE_BYTES`] a guest writes to stderr and silently drops the
/// rest: a chatty guest never fails for its logging, and a panic message reaches the error.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    pub(crate) fn text(&self) -> String {
        // A guest thread that panicked while writing leaves what it wrote: keep it.
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn append(&self, bytes: &[u8]) {
        if let Ok(mut buf) = self.0.lock() {
            let room = STDERR_CAPTURE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.2 is linked; a 0.3 stream is never asked for. Drop its bytes.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn constant_rng_is_constant_and_not_degenerate() {
        let mut a = ConstantRng::new(RANDOM_SEED);
        let mut b = ConstantRng::new(RANDOM_SEED);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        let mut buf = [0u8; 13];
        a.fill_bytes(&mut buf);
        assert!(buf.iter().any(|&x| x != 0));
    }

    #[test]
    fn stderr_keeps_only_the_head() {
        let tail = StderrTail::default();
        tail.append(&vec![b'a'; STDERR_CAPTURE_BYTES - 1]);
        tail.append(b"bcd");
        let text = tail.text();
        assert_eq!(text.len(), STDERR_CAPTURE_BYTES);
        assert!(text.ends_with("ab"));
    }
}
