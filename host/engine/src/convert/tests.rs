//! Tests of Arrow ⇄ contract conversion: every dtype both ways, and refused batches.

use super::*;
use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_schema::Schema;

fn every_dtype_with_nulls() -> (Vec<ColumnSpec>, Vec<ArrayRef>) {
    let mut list = ListBuilder::new(Float32Builder::new());
    list.append_value([Some(1.5), Some(-0.0)]);
    list.append_null();
    list.append_value([]);
    list.append_value([Some(f32::NAN), Some(f32::INFINITY), Some(3.0)]);
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            Some(true),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(i64::MIN),
            Some(0),
            None,
            Some(i64::MAX),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(f64::NAN),
            None,
            Some(-0.0),
            Some(1e308),
        ])),
        Arc::new(StringArray::from(vec![
            Some("héllo"),
            Some(""),
            None,
            Some("🦀"),
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(-1),
                None,
                Some(0),
                Some(1_700_000_000_000_000),
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(list.finish()),
    ];
    let specs = DType::ALL
        .iter()
        .map(|d| ColumnSpec::new(format!("c_{}", d.name()), *d))
        .collect();
    (specs, arrays)
}

/// What the guest would lift from the lowered batch, built on the host.
fn to_wit(batch: &BatchIn<'_>) -> wit::Batch {
    let columns = batch
        .columns
        .iter()
        .map(|c| wit::Column {
            name: c.name.to_owned(),
            validity: c.validity.map(<[u8]>::to_vec),
            data: match &c.data {
                DataIn::Boolean(v) => wit::ColumnData::Boolean(v.to_vec()),
                DataIn::Int64(v) => wit::ColumnData::Int64(v.to_vec()),
                DataIn::Float64(v) => wit::ColumnData::Float64(v.to_vec()),
                DataIn::Timestamp(v) => wit::ColumnData::Timestamp(v.to_vec()),
                DataIn::Utf8(u) => wit::ColumnData::Utf8(wit::Utf8Data {
                    offsets: u.offsets.to_vec(),
                    bytes: u.bytes.to_vec(),
                }),
                DataIn::Float32List(l) => wit::ColumnData::Float32List(wit::Float32ListData {
                    offsets: l.offsets.to_vec(),
                    values: l.values.to_vec(),
                }),
            },
        })
        .collect();
    wit::Batch {
        rows: batch.rows,
        columns,
    }
}

fn schema(specs: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        specs
            .iter()
            .map(ColumnSpec::arrow_field)
            .collect::<Vec<_>>(),
    ))
}

fn bits_equal(a: &dyn Array, b: &dyn Array) -> bool {
    // NaN != NaN under PartialEq; compare the canonical bit layout instead.
    a.to_data() == b.to_data() || format!("{:?}", a.to_data()) == format!("{:?}", b.to_data())
}

#[test]
fn every_dtype_round_trips_with_nulls() {
    let (specs, arrays) = every_dtype_with_nulls();
    let batch = RecordBatch::try_new(schema(&specs), arrays.clone()).unwrap();
    let conformed = conform_input(&batch, &specs).unwrap();
    let staged = stage(conformed);
    let wit = to_wit(&batch_in(4, &specs, &staged));
    let back = batch_from_wit(wit, 4, &specs, &schema(&specs)).unwrap();
    for (i, (a, b)) in arrays.iter().zip(back.columns()).enumerate() {
        assert_eq!(a.data_type(), b.data_type(), "column {i}");
        assert_eq!(a.logical_nulls(), b.logical_nulls(), "column {i}");
        assert!(
            bits_equal(a.as_ref(), b.as_ref()),
            "column {i}: {a:?} vs {b:?}"
        );
    }
    let f = back.column(2).as_primitive::<Float64Type>();
    assert!(f.value(0).is_nan());
    assert_eq!(f.value(2).to_bits(), (-0.0f64).to_bits());
}

#[test]
fn sliced_arrays_round_trip() {
    let (specs, arrays) = every_dtype_with_nulls();
    let sliced: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(1, 3)).collect();
    let batch = RecordBatch::try_new(schema(&specs), sliced.clone()).unwrap();
    let conformed = conform_input(&batch, &specs).unwrap();
    let staged = stage(conformed);
    let wit = to_wit(&batch_in(3, &specs, &staged));
    let back = batch_from_wit(wit, 3, &specs, &schema(&specs)).unwrap();
    for (a, b) in sliced.iter().zip(back.columns()) {
        assert_eq!(a.logical_nulls(), b.logical_nulls());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

#[test]
fn input_checks_name_the_column() {
    let spec = ColumnSpec::new("amount", DType::Float64);
    let batch =
        RecordBatch::try_from_iter([("amt", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)])
            .unwrap();
    let err = conform_input(&batch, std::slice::from_ref(&spec)).unwrap_err();
    assert_eq!(err.column.as_deref(), Some("amount"));
    assert!(err.reason.contains("missing"), "{}", err.reason);
    assert!(err.reason.contains("amt"), "{}", err.reason);

    let strings: ArrayRef = Arc::new(StringArray::from(vec!["1.0"]));
    let err = conform_array(&strings, &spec).unwrap_err();
    assert!(err.reason.contains("Utf8"), "{}", err.reason);

    let strict = ColumnSpec {
        nullable: false,
        ..spec.clone()
    };
    let with_null: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None]));
    let err = conform_array(&with_null, &strict).unwrap_err();
    assert_eq!(err.reason, "is declared not null but row 1 is null");
}

#[test]
fn inputs_widen_losslessly() {
    let ints: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![Some(7), None]));
    let out = conform_array(&ints, &ColumnSpec::new("n", DType::Int64)).unwrap();
    assert_eq!(out.data_type(), &DataType::Int64);
    assert_eq!(out.null_count(), 1);

    let millis: ArrayRef = Arc::new(arrow_array::TimestampMillisecondArray::from(vec![1_500]));
    let out = conform_array(&millis, &ColumnSpec::new("t", DType::Timestamp)).unwrap();
    assert_eq!(out.data_type(), &DType::Timestamp.arrow_type());
    assert_eq!(
        out.as_primitive::<TimestampMicrosecondType>().value(0),
        1_500_000
    );

    // A UTC-labelled instant keeps its value: no zone shift.
    let utc: ArrayRef =
        Arc::new(arrow_array::TimestampNanosecondArray::from(vec![-5_000]).with_timezone("UTC"));
    let out = conform_array(&utc, &ColumnSpec::new("t", DType::Timestamp)).unwrap();
    assert_eq!(out.as_primitive::<TimestampMicrosecondType>().value(0), -5);

    // Overflow is an error, not a silent null.
    let seconds: ArrayRef = Arc::new(arrow_array::TimestampSecondArray::from(vec![i64::MAX / 10]));
    let err = conform_array(&seconds, &ColumnSpec::new("t", DType::Timestamp)).unwrap_err();
    assert!(err.reason.contains("cannot convert"), "{}", err.reason);
}

#[test]
fn hostile_outputs_are_refused_without_panicking() {
    let spec = ColumnSpec::new("s", DType::String);
    let specs = std::slice::from_ref(&spec);
    let s = schema(specs);
    let utf8 = |offsets: Vec<u32>, bytes: Vec<u8>| wit::Batch {
        rows: 2,
        columns: vec![wit::Column {
            name: "s".into(),
            validity: None,
            data: wit::ColumnData::Utf8(wit::Utf8Data { offsets, bytes }),
        }],
    };
    let cases = [
        (utf8(vec![0, 1], b"a".to_vec()), "has 2 offsets for 2 rows"),
        (
            utf8(vec![1, 1, 1], b"a".to_vec()),
            "offsets must start at 0",
        ),
        (
            utf8(vec![0, 2, 1], b"ab".to_vec()),
            "offsets decrease at row 1",
        ),
        (utf8(vec![0, 1, 9], b"ab".to_vec()), "offsets end at 9"),
        (utf8(vec![0, 1, 2], vec![b'a', 0xff]), "utf-8"),
    ];
    for (batch, want) in cases {
        let err = batch_from_wit(batch, 2, specs, &s).unwrap_err();
        assert!(
            err.reason.to_lowercase().contains(&want.to_lowercase()),
            "{} should contain {want}",
            err.reason
        );
    }

    let f = ColumnSpec::new("f", DType::Float64);
    let fs = std::slice::from_ref(&f);
    let wrong_type = wit::Batch {
        rows: 1,
        columns: vec![wit::Column {
            name: "f".into(),
            validity: None,
            data: wit::ColumnData::Int64(vec![1]),
        }],
    };
    let err = batch_from_wit(wrong_type, 1, fs, &schema(fs)).unwrap_err();
    assert_eq!(err.reason, "is declared float64 but holds int64 data");

    let short_validity = wit::Batch {
        rows: 9,
        columns: vec![wit::Column {
            name: "f".into(),
            validity: Some(vec![0xff]),
            data: wit::ColumnData::Float64(vec![0.0; 9]),
        }],
    };
    let err = batch_from_wit(short_validity, 9, fs, &schema(fs)).unwrap_err();
    assert!(
        err.reason.contains("validity bitmap has 1 bytes"),
        "{}",
        err.reason
    );
}
