//! Returns every input column unchanged, one of each dtype: proves the whole round trip
//! (Arrow → contract → guest views → guest columns → contract → Arrow) loses no bit.

use skewless_sdk::{
    DType, Float32ListColumn, Input, Output, Result, Signature, StringColumn, Transform,
    ValuesColumn, export,
};

#[derive(Debug)]
struct Echo;

impl Transform for Echo {
    fn signature() -> Signature {
        Signature::new()
            .input("b", DType::Bool)
            .input("i", DType::Int64)
            .input("f", DType::Float64)
            .input("s", DType::String)
            .input("t", DType::Timestamp)
            .input("e", DType::Float32List)
            .output("b", DType::Bool)
            .output("i", DType::Int64)
            .output("f", DType::Float64)
            .output("s", DType::String)
            .output("t", DType::Timestamp)
            .output("e", DType::Float32List)
    }

    fn transform(input: &Input) -> Result<Output> {
        let rows = input.rows();
        let b = input.bool("b")?;
        let i = input.int64("i")?;
        let f = input.float64("f")?;
        let t = input.timestamp("t")?;
        let s: StringColumn = input.string("s")?.iter().collect();
        let lists = input.float32_list("e")?;
        let mut e = Float32ListColumn::with_capacity(rows, 0);
        (0..rows).for_each(|r| e.push(lists.get(r)));
        Ok(Output::new(rows)
            .bool("b", ValuesColumn::from_options(b.iter()))
            .int64("i", ValuesColumn::from_options(i.iter()))
            .float64("f", f.map(|x| x))
            .string("s", s)
            .timestamp("t", t.map(|v| v))
            .float32_list("e", e))
    }
}

export!(Echo);
