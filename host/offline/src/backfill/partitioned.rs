//! The join partition by partition (by entity-key hash), through spill files or
//! partitions kept in memory: 1. the frame split by partition, 2. each view's source split
//! and joined partition by partition, 3. the frame again, in order, with its rows' joined
//! columns, through the transforms.

use super::*;

impl Job<'_> {
    /// The join partition by partition, through spill files under `dir`, or through
    /// partitions kept in memory when `dir` is `None`.
    pub(super) fn partitioned(
        &self,
        dir: Option<&Path>,
        out: &Writer,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, SourceStats)>> {
        let parts = self.parts;
        let views = &self.plan.views;
        progress.start(self.rows as u64 + views.len() as u64);
        let phase = Instant::now();
        // 1. The entity keys and times, split per view by that view's key.
        let entity_schemas: Vec<SchemaRef> =
            (0..views.len()).map(|v| self.entity_schema(v)).collect();
        let mut entity_parts: Vec<Partitioned> = entity_schemas
            .iter()
            .enumerate()
            .map(|(v, schema)| {
                Partitioned::new(dir, &format!("entities-{v}"), schema.clone(), parts)
            })
            .collect();
        let mut names: Vec<&str> = self
            .plan
            .join_keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        names.push(EVENT_TIMESTAMP);
        scan(
            self.entities,
            Some(&names),
            "the entity frame",
            None,
            CHUNK,
            |batch| {
                let n = batch.num_rows();
                let keys = self.keys(&batch)?;
                let at: ArrayRef = Arc::new(Int64Array::from(self.at(&batch)?));
                for ((v, split), schema) in entity_parts.iter_mut().enumerate().zip(&entity_schemas)
                {
                    let mut columns: Vec<ArrayRef> = views[v]
                        .key_columns
                        .iter()
                        .map(|&k| keys[k].clone())
                        .collect();
                    columns.push(at.clone());
                    let part = partitions(&self.view_keys(v, &keys, n), parts);
                    split.split(&self.batch(schema.clone(), columns)?, &part)?;
                }
                Ok(())
            },
        )?;
        let mut entity_parts = entity_parts
            .into_iter()
            .map(Partitioned::finish)
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(
            elapsed_ms = phase.elapsed().as_millis() as u64,
            "entity frame split"
        );
        let phase = Instant::now();
        // 2. Per view: its source rows split the same way, then each partition joined
        // alone, its result spilled in entity-row order.
        let mut joined = Vec::with_capacity(views.len());
        let mut sources = Vec::with_capacity(views.len());
        for (v, view) in views.iter().enumerate() {
            let source = &self.sources[v];
            let key_types: Vec<KeyType> = view
                .key_columns
                .iter()
                .map(|&k| self.plan.join_keys[k].dtype)
                .collect();
            let encode = |batch: &RecordBatch| {
                let typed: Vec<(ArrayRef, KeyType)> = key_types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (batch.column(i).clone(), *t))
                    .collect();
                KeyColumn::encode(&typed, batch.num_rows())
            };
            let (min, max) = self.window(v);
            let mut split = Partitioned::new(
                dir,
                &format!("source-{v}"),
                source.canonical_schema(),
                parts,
            );
            let read = source.scan(min, max, CHUNK, |batch| {
                split.split(&batch, &partitions(&encode(&batch), parts))
            })?;
            let mut source_parts = split.finish()?;
            tracing::debug!(view = %view.name, elapsed_ms = phase.elapsed().as_millis() as u64, "source split");
            let result_schema = self.result_schema(v);
            let mut results =
                Partitioned::new(dir, &format!("joined-{v}"), result_schema.clone(), parts);
            for p in 0..parts {
                let entity = entity_parts[v].read(p)?;
                entity_parts[v].remove(p);
                let features = source_parts.read(p)?;
                source_parts.remove(p);
                if entity.num_rows() == 0 {
                    continue;
                }
                let k = key_types.len();
                let at = entity.column(k).as_primitive::<Int64Type>().values();
                let result = self.join_view(v, &encode(&entity), at, &source.rows(&features))?;
                let mut columns = result.columns;
                columns.push(Arc::new(UInt8Array::from_iter_values(
                    result.status.iter().map(|s| status_code(*s)),
                )));
                columns.push(Arc::new(Int64Array::from(result.event_ts)));
                results.append(p, &self.batch(result_schema.clone(), columns)?)?;
            }
            tracing::info!(
                view = %view.name,
                source_rows = read.rows_read,
                row_groups_skipped = read.row_groups_skipped,
                partitions = parts,
                "joined as of each entity row, partition by partition"
            );
            joined.push(results.finish()?);
            sources.push((view.name.clone(), read));
            progress.advance(1);
            tracing::debug!(view = %view.name, elapsed_ms = phase.elapsed().as_millis() as u64, "source split and joined");
        }
        let phase = Instant::now();
        // 3. The frame again, in order, each row's view columns taken from its partition's
        // results (which are in entity-row order within the partition).
        let mut cursors = joined
            .iter()
            .map(|j| (0..parts).map(|p| j.cursor(p)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let mut pending = Vec::with_capacity(self.threads);
        let mut first = 0;
        scan(
            self.entities,
            None,
            "the entity frame",
            None,
            CHUNK,
            |batch| {
                let n = batch.num_rows();
                let keys = self.keys(&batch)?;
                let mut chunk_views = Vec::with_capacity(views.len());
                for (v, cursors) in cursors.iter_mut().enumerate() {
                    let part = partitions(&self.view_keys(v, &keys, n), parts);
                    let mut need = vec![0usize; parts];
                    let index: Vec<(usize, usize)> = part
                        .iter()
                        .map(|&p| {
                            let p = p as usize;
                            need[p] += 1;
                            (p, need[p] - 1)
                        })
                        .collect();
                    let taken = cursors
                        .iter_mut()
                        .zip(&need)
                        .map(|(c, &n)| c.take(n))
                        .collect::<Result<Vec<_>>>()?;
                    let columns = (0..taken.first().map_or(0, RecordBatch::num_columns))
                        .map(|c| {
                            let arrays: Vec<&dyn Array> =
                                taken.iter().map(|b| b.column(c).as_ref()).collect();
                            arrow_select::interleave::interleave(&arrays, &index)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|source| Error::Arrow {
                            context: format!(
                                "a spill file in {}",
                                dir.map_or_else(|| self.entities.to_owned(), Path::to_owned)
                                    .display()
                            ),
                            source,
                        })?;
                    chunk_views.push(view_columns(columns));
                }
                pending.push(Chunk {
                    first,
                    frame: batch.columns().to_vec(),
                    at: self.at(&batch)?,
                    views: chunk_views,
                    request: self.request(&batch)?,
                });
                first += n;
                if pending.len() >= self.threads {
                    self.run_chunks(std::mem::take(&mut pending), out, progress)?;
                }
                Ok(())
            },
        )?;
        self.run_chunks(pending, out, progress)?;
        tracing::debug!(
            elapsed_ms = phase.elapsed().as_millis() as u64,
            "transformed and written"
        );
        Ok(sources)
    }

    /// A spilled entity row for view `v`: its key columns, then its time.
    fn entity_schema(&self, v: usize) -> SchemaRef {
        let mut fields: Vec<Field> = self.plan.views[v]
            .key_columns
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                Field::new(
                    format!("key{i}"),
                    self.plan.join_keys[k].dtype.dtype().arrow_type(),
                    true,
                )
            })
            .collect();
        fields.push(Field::new("at", ArrowType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// A spilled join result for view `v`: its features, the status, the event time.
    fn result_schema(&self, v: usize) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .dtypes(v)
            .iter()
            .enumerate()
            .map(|(i, d)| Field::new(format!("f{i}"), d.arrow_type(), true))
            .collect();
        fields.push(Field::new("status", ArrowType::UInt8, false));
        fields.push(Field::new("event_ts", ArrowType::Int64, true));
        Arc::new(Schema::new(fields))
    }
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::Present => 0,
        Status::NullValue => 1,
        Status::NotFound => 2,
        Status::OutsideMaxAge => 3,
        Status::TransformError => 4,
    }
}

fn status_of(code: u8) -> Status {
    match code {
        0 => Status::Present,
        1 => Status::NullValue,
        3 => Status::OutsideMaxAge,
        4 => Status::TransformError,
        _ => Status::NotFound,
    }
}

/// [`ViewColumns`] from a spilled join result's columns (see [`Job::result_schema`]).
fn view_columns(mut columns: Vec<ArrayRef>) -> ViewColumns {
    let event_ts = columns
        .pop()
        .map_or_else(Vec::new, |a| a.as_primitive::<Int64Type>().iter().collect());
    let status = columns.pop().map_or_else(Vec::new, |a| {
        a.as_primitive::<UInt8Type>()
            .values()
            .iter()
            .map(|&c| status_of(c))
            .collect()
    });
    ViewColumns {
        columns,
        status,
        event_ts,
    }
}
