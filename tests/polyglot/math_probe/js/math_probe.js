// The math probe in JavaScript: SpiderMonkey's Math (see tests/guests/math-probe).
import { FLOAT64, transform } from "./skewless.js";

const UNARY = [
  ["sqrt", Math.sqrt],
  ["exp", Math.exp],
  ["expm1", Math.expm1],
  ["log", Math.log],
  ["log1p", Math.log1p],
  ["log10", Math.log10],
  ["sin", Math.sin],
  ["cos", Math.cos],
  ["tan", Math.tan],
  ["atan", Math.atan],
  ["tanh", Math.tanh],
  ["cbrt", Math.cbrt],
];

const outputs = Object.fromEntries(UNARY.map(([name]) => [name, FLOAT64]));
outputs.pow = FLOAT64;
outputs.atan2 = FLOAT64;

export const transformer = transform({ name: "math_probe", inputs: { x: FLOAT64, y: FLOAT64 }, outputs }, (x, y) => {
  const binary = (f) => x.map((a, i) => (a === null || y[i] === null ? null : f(a, y[i])));
  return [...UNARY.map(([, f]) => x.map((a) => (a === null ? null : f(a)))), binary(Math.pow), binary(Math.atan2)];
});
