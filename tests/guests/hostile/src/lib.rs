//! A transform that misbehaves on request: the first row of `mode` picks how.
//! `ok` copies `x` to `y`; `panic` panics; `trap` hits `unreachable`; `loop` never returns;
//! `alloc` allocates without bound; `huge` returns 1 MiB of text per row;
//! `error` returns a computation error; `sleep` sleeps an hour (WASI timers) and then
//! answers as `ok`; `sleep_max` sleeps `u64::MAX` nanoseconds, then answers; `wait` waits
//! in a loop for a clock that never moves; `poll` calls wasi:io/poll.poll on an hour's
//! timer and one due at `u64::MAX` and answers `ready` in `s` if both are; `nan` answers a NaN with a payload, made by
//! bit-cast (which wasmtime's NaN canonicalization does not touch).

use skewless_sdk::{DType, Error, Input, Output, Result, Signature, StringColumn, Transform, export};

#[derive(Debug)]
struct Hostile;

impl Transform for Hostile {
    fn signature() -> Signature {
        Signature::new()
            .input("mode", DType::String)
            .input("x", DType::Float64)
            .output("y", DType::Float64)
            .output("s", DType::String)
    }

    fn transform(input: &Input) -> Result<Output> {
        let mode = input.string("mode")?;
        let x = input.float64("x")?;
        let rows = input.rows();
        let mut s = StringColumn::with_capacity(rows, 0);
        match mode.get(0).unwrap_or("ok") {
            "panic" => panic!("hostile guest panicked on purpose at row 0"),
            "trap" => std::process::abort(),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "huge" => {
                let mb = "x".repeat(1 << 20);
                s = StringColumn::with_capacity(rows, rows << 20);
                (0..rows).for_each(|_| s.push_str(&mb));
            }
            "error" => {
                return Err(Error::Computation("row 0: refusing on purpose".into()));
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                (0..rows).for_each(|_| s.push_null());
            }
            "sleep_max" => {
                std::thread::sleep(std::time::Duration::from_nanos(u64::MAX));
                (0..rows).for_each(|_| s.push_null());
            }
            "nan" => {
                (0..rows).for_each(|_| s.push_null());
                let payload = f64::from_bits(0x7ff8_dead_beef_0001);
                return Ok(Output::new(rows)
                    .float64("y", x.map(|_| payload))
                    .string("s", s));
            }
            "poll" => {
                // wasi:io/poll.poll over two timers, one never due on a running
                // clock; answers `ready` only if both came back ready at once.
                use wasip2::clocks::monotonic_clock::{subscribe_duration, subscribe_instant};
                let hour = subscribe_duration(3_600_000_000_000);
                let never = subscribe_instant(u64::MAX);
                let ready = wasip2::io::poll::poll(&[&hour, &never]);
                let answer = if ready == [0, 1] { "ready" } else { "not ready" };
                (0..rows).for_each(|_| s.push_str(answer));
            }
            "wait" => {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(1) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                (0..rows).for_each(|_| s.push_null());
            }
            _ => (0..rows).for_each(|_| s.push_null()),
        }
        Ok(Output::new(rows).float64("y", x.map(|v| v)).string("s", s))
    }
}

export!(Hostile);
