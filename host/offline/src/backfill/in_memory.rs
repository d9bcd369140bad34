//! The join with every input in memory: each view joined at once, then the transforms
//! chunk by chunk.

use super::*;

impl Job<'_> {
    /// The whole join in memory.
    pub(super) fn in_memory(
        &self,
        out: &Writer,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, SourceStats)>> {
        let frame = read_table(self.entities, None, "the entity frame", None)?.batch;
        let rows = frame.num_rows();
        let at = self.at(&frame)?;
        let keys = self.keys(&frame)?;
        let request = self.request(&frame)?;
        // Steps: one per view joined, then one per entity row through the transforms.
        progress.start(rows as u64 + self.plan.views.len() as u64);
        let mut views = Vec::with_capacity(self.plan.views.len());
        let mut sources = Vec::with_capacity(self.plan.views.len());
        for (v, view) in self.plan.views.iter().enumerate() {
            let (min, max) = self.window(v);
            let (rows_of_view, read) = self.sources[v].read(min, max)?;
            views.push(self.join_view(v, &self.view_keys(v, &keys, rows), &at, &rows_of_view)?);
            tracing::info!(
                view = %view.name,
                source_rows = rows_of_view.event_ts.len(),
                row_groups_skipped = read.row_groups_skipped,
                "joined as of each entity row"
            );
            sources.push((view.name.clone(), read));
            progress.advance(1);
        }
        let starts: Vec<usize> = (0..rows).step_by(CHUNK).collect();
        for group in starts.chunks(self.threads) {
            let chunks = group
                .iter()
                .map(|&first| {
                    let len = CHUNK.min(rows - first);
                    Chunk {
                        first,
                        frame: frame
                            .columns()
                            .iter()
                            .map(|c| c.slice(first, len))
                            .collect(),
                        at: at[first..first + len].to_vec(),
                        views: views.iter().map(|v| slice_view(v, first, len)).collect(),
                        request: request.iter().map(|a| a.slice(first, len)).collect(),
                    }
                })
                .collect();
            self.run_chunks(chunks, out, progress)?;
        }
        Ok(sources)
    }
}
