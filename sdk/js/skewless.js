// Write Skewless feature transforms in JavaScript.
//
// A transform is a function over columns. Each input arrives as a plain array with one
// item per row (`null` at a null): numbers for float64, BigInts for int64 and
// timestamp, booleans, strings, and arrays of numbers for float32_list. The function
// returns an array holding one array per output, in declared order (even when there is
// one output):
//
//     import { transform, FLOAT64 } from "./skewless.js";
//     export const transformer = transform(
//       { inputs: { amount: FLOAT64 }, outputs: { amount_doubled: FLOAT64 } },
//       (amount) => [amount.map((a) => (a === null ? null : a * 2))],
//     );
//
// `skewless build PATH` places this file beside the project's sources and builds the
// component with componentize-js; the host runs it in backfills and at request time.
// JavaScript numbers are IEEE 754 binary64: + - * / and Math.sqrt are correctly rounded
// and give the same bits as in Rust, C or Python. Math.log1p, Math.exp and friends come
// from SpiderMonkey's own math library; see docs/languages.md for how far they differ.

export const BOOL = "bool";
export const INT64 = "int64";
export const FLOAT64 = "float64";
export const UTF8 = "utf8";
export const TIMESTAMP = "timestamp";
export const FLOAT32_LIST = "float32_list";

const WIT_DTYPE = {
  bool: "boolean",
  int64: "int64",
  float64: "float64",
  utf8: "utf8",
  timestamp: "timestamp",
  float32_list: "float32-list",
};
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

// A column declaration: `{ name: dtype }` maps, or arrays of
// `{ name, dtype, nullable }` (to declare a non-nullable column).
function columns(kind, spec) {
  const list = Array.isArray(spec)
    ? spec.map((c) => ({ name: c.name, dtype: c.dtype, nullable: c.nullable !== false }))
    : Object.entries(spec).map(([name, dtype]) => ({ name, dtype, nullable: true }));
  const seen = new Set();
  for (const c of list) {
    if (typeof c.name !== "string" || c.name === "") {
      throw new Error(`${kind}: a column name must be a non-empty string`);
    }
    if (!(c.dtype in WIT_DTYPE)) {
      throw new Error(`${kind}: column ${c.name}: unknown dtype ${c.dtype}`);
    }
    if (seen.has(c.name)) throw new Error(`${kind}: column ${c.name} is declared twice`);
    seen.add(c.name);
  }
  return list;
}

class OutputError extends Error {}

function isValid(validity, row) {
  return validity === undefined || validity === null || ((validity[row >> 3] >> (row & 7)) & 1) === 1;
}

function inputValues(column, rows) {
  const { tag, val } = column.data;
  const out = new Array(rows);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (let i = 0; i < rows; i++) {
    if (!isValid(column.validity, i)) {
      out[i] = null;
    } else if (tag === "boolean") {
      out[i] = ((val[i >> 3] >> (i & 7)) & 1) === 1;
    } else if (tag === "utf8") {
      out[i] = decoder.decode(val.bytes.subarray(val.offsets[i], val.offsets[i + 1]));
    } else if (tag === "float32-list") {
      out[i] = Array.from(val.values.subarray(val.offsets[i], val.offsets[i + 1]));
    } else {
      out[i] = val[i];
    }
  }
  return out;
}

function fail(spec, row, value, expected) {
  throw new OutputError(
    `output ${spec.name} (${spec.dtype}) row ${row}: expected ${expected}, got ${typeof value} ${String(value)}`,
  );
}

function outputColumn(spec, values, rows) {
  if (!Array.isArray(values) && !ArrayBuffer.isView(values)) {
    throw new OutputError(`output ${spec.name}: expected an array of ${rows} values`);
  }
  if (values.length !== rows) {
    throw new OutputError(`output ${spec.name}: ${values.length} values for ${rows} input rows`);
  }
  let validity;
  const nullAt = (row) => {
    if (!spec.nullable) throw new OutputError(`output ${spec.name} row ${row}: null in a non-nullable column`);
    if (validity === undefined) validity = new Uint8Array((rows + 7) >> 3).fill(0xff);
    validity[row >> 3] &= ~(1 << (row & 7));
  };
  let data;
  switch (spec.dtype) {
    case FLOAT64: {
      const out = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        const v = values[i];
        if (v === null || v === undefined) nullAt(i);
        else if (typeof v === "number") out[i] = v;
        else fail(spec, i, v, "a number");
      }
      data = { tag: "float64", val: out };
      break;
    }
    case INT64:
    case TIMESTAMP: {
      const out = new BigInt64Array(rows);
      for (let i = 0; i < rows; i++) {
        const v = values[i];
        if (v === null || v === undefined) nullAt(i);
        else if (typeof v === "bigint" && v >= I64_MIN && v <= I64_MAX) out[i] = v;
        else if (typeof v === "number" && Number.isSafeInteger(v)) out[i] = BigInt(v);
        else fail(spec, i, v, "a BigInt (or a safe integer) within 64 bits");
      }
      data = { tag: spec.dtype, val: out };
      break;
    }
    case BOOL: {
      const out = new Uint8Array((rows + 7) >> 3);
      for (let i = 0; i < rows; i++) {
        const v = values[i];
        if (v === null || v === undefined) nullAt(i);
        else if (v === true) out[i >> 3] |= 1 << (i & 7);
        else if (v !== false) fail(spec, i, v, "a boolean");
      }
      data = { tag: "boolean", val: out };
      break;
    }
    case UTF8: {
      const encoder = new TextEncoder();
      const parts = [];
      const offsets = new Uint32Array(rows + 1);
      let total = 0;
      for (let i = 0; i < rows; i++) {
        const v = values[i];
        if (v === null || v === undefined) nullAt(i);
        else if (typeof v === "string") {
          const bytes = encoder.encode(v);
          parts.push(bytes);
          total += bytes.length;
        } else fail(spec, i, v, "a string");
        offsets[i + 1] = total;
      }
      const bytes = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        bytes.set(p, at);
        at += p.length;
      }
      data = { tag: "utf8", val: { offsets, bytes } };
      break;
    }
    case FLOAT32_LIST: {
      const offsets = new Uint32Array(rows + 1);
      const flat = [];
      for (let i = 0; i < rows; i++) {
        const v = values[i];
        if (v === null || v === undefined) nullAt(i);
        else if (Array.isArray(v) && v.every((x) => typeof x === "number")) flat.push(...v);
        else fail(spec, i, v, "an array of numbers");
        offsets[i + 1] = flat.length;
      }
      data = { tag: "float32-list", val: { offsets, values: Float32Array.from(flat) } };
      break;
    }
  }
  return { name: spec.name, validity, data };
}

function transformError(tag, message) {
  // componentize-js turns a thrown value's `payload` into the `err` of the result.
  const error = new Error(message);
  error.payload = { tag, val: message };
  return error;
}

// Declares `fn` as this component's transform; export the result as `transformer`.
export function transform({ name, inputs, outputs }, fn) {
  const ins = columns("inputs", inputs);
  const outs = columns("outputs", outputs);
  if (outs.length === 0) throw new Error("a transform must declare at least one output");
  const label = name ?? fn.name ?? "transform";
  const wit = (c) => ({ name: c.name, dtype: WIT_DTYPE[c.dtype], nullable: c.nullable });
  return {
    describe() {
      return { inputs: ins.map(wit), outputs: outs.map(wit) };
    },
    transform(batch) {
      const rows = batch.rows;
      let result;
      try {
        const lists = batch.columns.map((c) => inputValues(c, rows));
        result = fn(...lists);
      } catch (e) {
        throw transformError("computation", `JavaScript transform ${label} threw ${e?.name ?? "a value"}: ${e?.message ?? String(e)}`);
      }
      if (!Array.isArray(result) || result.length !== outs.length) {
        throw transformError(
          "other",
          `JavaScript transform ${label} returned ${Array.isArray(result) ? result.length : typeof result} columns; it declares ${outs.length} outputs`,
        );
      }
      try {
        return { rows, columns: outs.map((spec, i) => outputColumn(spec, result[i], rows)) };
      } catch (e) {
        if (e instanceof OutputError) throw transformError("other", `JavaScript transform ${label}: ${e.message}`);
        throw e;
      }
    },
  };
}
