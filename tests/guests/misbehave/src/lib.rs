//! Written against the raw contract (no SDK), to return what the SDK would never build.
//! The first row of `mode` picks: `rows` (one row too many), `dtype` (int64 data for a
//! float64 column), `missing` (no columns), `nulls` (a null in a non-null column),
//! `utf8` (invalid UTF-8), `offsets` (offsets past the end); anything else is valid.

#![allow(unsafe_code, reason = "raw wit-bindgen exports, as a guest without the SDK has")]

wit_bindgen::generate!({ path: "../../../wit", world: "feature-transform" });

use exports::skewless::transform::transformer::{
    Batch, Column, ColumnData, ColumnSpec, Dtype, Guest, Signature, TransformError, Utf8Data,
};

struct Misbehave;

fn spec(name: &str, dtype: Dtype, nullable: bool) -> ColumnSpec {
    ColumnSpec { name: name.into(), dtype, nullable }
}

fn first_mode(batch: &Batch) -> String {
    batch
        .columns
        .iter()
        .find_map(|c| match &c.data {
            ColumnData::Utf8(Utf8Data { offsets, bytes }) if c.name == "mode" && offsets.len() > 1 => {
                Some(String::from_utf8_lossy(&bytes[offsets[0] as usize..offsets[1] as usize]).into_owned())
            }
            _ => None,
        })
        .unwrap_or_default()
}

impl Guest for Misbehave {
    fn describe() -> Signature {
        Signature {
            inputs: vec![spec("mode", Dtype::Utf8, true)],
            outputs: vec![spec("y", Dtype::Float64, false), spec("s", Dtype::Utf8, true)],
        }
    }

    fn transform(input: Batch) -> Result<Batch, TransformError> {
        let rows = input.rows;
        let n = rows as usize;
        let mode = first_mode(&input);
        let mut y = Column { name: "y".into(), validity: None, data: ColumnData::Float64(vec![1.0; n]) };
        let mut offsets: Vec<u32> = (0..=rows).collect();
        let mut bytes = vec![b'a'; n];
        let mut out_rows = rows;
        match mode.as_str() {
            "rows" => {
                out_rows += 1;
                y.data = ColumnData::Float64(vec![1.0; n + 1]);
                offsets.push(rows + 1);
                bytes.push(b'a');
            }
            "dtype" => y.data = ColumnData::Int64(vec![1; n]),
            "missing" => return Ok(Batch { rows, columns: vec![] }),
            "nulls" => y.validity = Some(vec![0; n.div_ceil(8)]),
            "utf8" => bytes[0] = 0xff,
            "offsets" => *offsets.last_mut().unwrap() += 1000,
            _ => {}
        }
        let s = Column { name: "s".into(), validity: None, data: ColumnData::Utf8(Utf8Data { offsets, bytes }) };
        Ok(Batch { rows: out_rows, columns: vec![y, s] })
    }
}

export!(Misbehave);
