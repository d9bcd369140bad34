// Builds a JavaScript transform into a Skewless component with componentize-js.
//
//   node build.mjs --wit WIT_DIR --entry SOURCE.js --out OUT.wasm
//
// Run by `skewless build`, which stages the project's sources beside skewless.js first.
// Every WASI feature of the JS engine is disabled, so the component imports nothing: no
// clocks, no random source, no stdio, no network. A transform that reaches for one of
// them fails at build time (an unknown global) or at its call, never silently.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    wit: { type: "string" },
    entry: { type: "string" },
    out: { type: "string" },
    world: { type: "string", default: "feature-transform" },
  },
});
for (const required of ["wit", "entry", "out"]) {
  if (!values[required]) {
    console.error(`build.mjs: --${required} is required`);
    process.exit(2);
  }
}
const { component } = await componentize({
  sourcePath: values.entry,
  witPath: values.wit,
  worldName: values.world,
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(values.out, component);
