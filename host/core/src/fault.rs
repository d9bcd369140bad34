//! Who is at fault for an error: the one classification every Skewless crate's error
//! answers with `fn fault()`, and the one the server maps to an HTTP status.

/// Who is at fault for an error. Decides, for a server, between a 4xx, a 5xx and a 503;
/// for a backfill, between "fix your input", "fix your transform" and "report a bug".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The caller: invalid input, definitions or components, or something that does not
    /// exist. Fixed by changing the request.
    Caller,
    /// The transform: it trapped, ran out of time or memory, returned an error or an
    /// output that breaks its own signature. Fixed by changing the transform.
    Guest,
    /// Skewless itself or its machine: a broken invariant (a bug), an I/O failure, a
    /// damaged data file. Never answered with a value; the detail goes to the log.
    Internal,
    /// A service Skewless depends on (Redis, say) is unreachable or refusing for now;
    /// retrying later may succeed.
    Unavailable,
}

impl Fault {
    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Caller => "caller",
            Fault::Guest => "guest",
            Fault::Internal => "internal",
            Fault::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The message of a caught panic payload (what `panic!` was given), for an internal error
/// that reports a worker thread's panic instead of turning it into a value.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let caught = std::panic::catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(&*caught), "static text");
        let n = 3;
        let caught = std::panic::catch_unwind(|| panic!("formatted {n}")).unwrap_err();
        assert_eq!(panic_message(&*caught), "formatted 3");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*caught), "a panic without a message");
    }
}
