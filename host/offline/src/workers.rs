//! Worker threads whose panics are reported as internal errors, never turned into values:
//! a join worker that panicked once yielded an empty result, and every entity of its
//! shard was served as `NOT_FOUND`.

use std::thread::{Scope, ScopedJoinHandle};

use skewless_core::panic_message;

use crate::{Error, Result};

/// Spawns `work` on `scope`. Tests may make a named worker panic (see [`fault_point`]);
/// the request travels to the worker with it, so it reaches nested workers too.
pub(crate) fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    work: impl FnOnce() -> T + Send + 'scope,
) -> ScopedJoinHandle<'scope, T> {
    #[cfg(test)]
    let injected = hook::PANIC_IN.get();
    scope.spawn(move || {
        #[cfg(test)]
        hook::PANIC_IN.set(injected);
        work()
    })
}

/// Joins `handles` in order. A worker's panic becomes [`Error::Internal`] naming `what`
/// and the panic's message; every handle is joined first, so no worker outlives the call.
pub(crate) fn join_all<T>(what: &str, handles: Vec<ScopedJoinHandle<'_, T>>) -> Result<Vec<T>> {
    let mut done = Vec::with_capacity(handles.len());
    let mut panicked = None;
    for handle in handles {
        match handle.join() {
            Ok(value) => done.push(value),
            Err(payload) => {
                panicked.get_or_insert_with(|| panic_message(&*payload));
            }
        }
    }
    match panicked {
        None => Ok(done),
        Some(message) => Err(Error::Internal(format!(
            "a {what} worker panicked: {message}"
        ))),
    }
}

/// Joins one worker, as [`join_all`].
pub(crate) fn join_one<T>(what: &str, handle: ScopedJoinHandle<'_, T>) -> Result<T> {
    let mut done = join_all(what, vec![handle])?;
    Ok(done.pop().expect("one handle joined gives one value"))
}

/// Where a worker of kind `worker` may be made to panic by a test; nothing in a build
/// that is not a test of this crate.
#[inline]
pub(crate) fn fault_point(worker: &str) {
    #[cfg(test)]
    if hook::PANIC_IN.get() == Some(worker) {
        panic!("injected panic in worker `{worker}`");
    }
    let _ = worker;
}

#[cfg(test)]
pub(crate) mod hook {
    use std::cell::Cell;

    thread_local! {
        pub(super) static PANIC_IN: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    /// Runs `f` with every `worker` worker it spawns (directly or not) panicking.
    pub(crate) fn panic_in<T>(worker: &'static str, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                PANIC_IN.set(None);
            }
        }
        PANIC_IN.set(Some(worker));
        let _reset = Reset;
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_worker_is_an_internal_error_after_every_worker_ends() {
        let ends = std::sync::atomic::AtomicUsize::new(0);
        let result = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let ends = &ends;
                    spawn(scope, move || {
                        if i == 1 {
                            panic!("worker {i} broke");
                        }
                        ends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        i
                    })
                })
                .collect();
            join_all("test", handles)
        });
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "internal error: a test worker panicked: worker 1 broke"
        );
        assert_eq!(ends.load(std::sync::atomic::Ordering::SeqCst), 3);

        let fine = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3).map(|i| spawn(scope, move || i * 2)).collect();
            join_all("test", handles)
        });
        assert_eq!(fine.unwrap(), [0, 2, 4]);
    }

    #[test]
    fn an_injected_panic_reaches_nested_workers_of_its_kind_only() {
        let outcome = hook::panic_in("inner", || {
            std::thread::scope(|scope| {
                let outer = spawn(scope, || {
                    fault_point("outer");
                    std::thread::scope(|scope| {
                        let inner = spawn(scope, || fault_point("inner"));
                        join_all("inner", vec![inner])
                    })
                });
                join_all("outer", vec![outer])
            })
        });
        let err = outcome.unwrap().pop().unwrap().unwrap_err();
        assert!(
            err.to_string().contains("injected panic in worker `inner`"),
            "{err}"
        );
        // The request ended with the call.
        fault_point("inner");
    }
}
