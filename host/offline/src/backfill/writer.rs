//! The output writer thread: encoding the output overlaps with computing the next chunks.

use super::*;

/// Hands output batches, in order, to the thread that writes them.
pub(super) struct Writer {
    send: std::sync::mpsc::SyncSender<RecordBatch>,
}

impl Writer {
    pub(super) fn write(&self, batch: RecordBatch) -> Result<()> {
        // The writer thread only hangs up after a write failed; `with_writer` reports that
        // failure rather than this one.
        self.send
            .send(batch)
            .map_err(|_| Error::Internal("the output writer stopped".into()))
    }
}

/// Runs `body` with a [`Writer`] whose batches a second thread hands to `write` (the
/// output file's), so that encoding the output overlaps with computing the next chunks.
/// A failed write fails the whole, with the write's own error.
pub(super) fn with_writer<R>(
    mut write: impl FnMut(&RecordBatch) -> Result<()> + Send,
    body: impl FnOnce(&Writer) -> Result<R>,
) -> Result<R> {
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let writer = workers::spawn(scope, move || -> Result<()> {
            workers::fault_point("output writer");
            for batch in receive {
                write(&batch)?;
            }
            Ok(())
        });
        let outcome = body(&Writer { send });
        // `body` dropped its Writer: the channel closes once the last batch is taken.
        let written = workers::join_one("output writer", writer).and_then(|w| w);
        written.and(outcome)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;

    fn batch(x: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![x])) as ArrayRef)])
            .unwrap()
    }

    fn failure(reason: &str) -> Error {
        Error::Parquet {
            path: PathBuf::from("out.parquet"),
            reason: reason.into(),
        }
    }

    /// The writer thread writes every batch in order; a failed write is the error
    /// reported, not the "writer stopped" its producer then sees; a failed producer's
    /// own error comes through once the writer has drained.
    #[test]
    fn the_writer_thread_keeps_order_and_reports_the_first_cause() {
        let mut written = Vec::new();
        let done = with_writer(
            |b| {
                written.push(b.column(0).as_primitive::<Int64Type>().value(0));
                Ok(())
            },
            |out| (0..10).try_for_each(|x| out.write(batch(x))),
        );
        assert!(done.is_ok());
        assert_eq!(written, (0..10).collect::<Vec<_>>());

        let error = with_writer(
            |b| {
                if b.column(0).as_primitive::<Int64Type>().value(0) == 3 {
                    return Err(failure("disk full"));
                }
                Ok(())
            },
            |out| (0..100).try_for_each(|x| out.write(batch(x))),
        )
        .unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");

        let error = with_writer(
            |_| Ok(()),
            |out| {
                out.write(batch(1))?;
                Err::<(), _>(failure("the transform failed"))
            },
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("the transform failed"),
            "{error}"
        );
    }
}
