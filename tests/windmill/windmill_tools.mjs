// Windmill's own parsers and validator, run on this repository's files for the Python tests.
//   node windmill_tools.mjs signature FILE...        -> {FILE: {args, schema, auto_kind}} as the wmill CLI derives it
//   node windmill_tools.mjs imports WORKSPACE_PATH FILE -> the workspace scripts FILE imports
//   node windmill_tools.mjs validate-flow FILE        -> {errors: [...]} from windmill-yaml-validator
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as py from "windmill-parser-wasm-py";
import * as pyImports from "windmill-parser-wasm-py-imports";

const require = createRequire(import.meta.url);
const wasm = (pkg) => readFileSync(require.resolve(`${pkg}/windmill_parser_wasm_bg.wasm`));
// windmill-utils-internal's ESM entry does not load under Node: take its CommonJS build.
const { argSigToJsonSchemaType } = require("windmill-utils-internal");

const [command, ...rest] = process.argv.slice(2);
let out;
if (command === "signature") {
  py.initSync({ module: wasm("windmill-parser-wasm-py") });
  out = {};
  for (const file of rest) {
    const sig = JSON.parse(py.parse_python(readFileSync(file, "utf8")));
    const properties = {};
    for (const arg of sig.args) {
      properties[arg.name] = {};
      argSigToJsonSchemaType(arg.typ, properties[arg.name]);
    }
    const required = sig.args.filter((a) => !a.has_default).map((a) => a.name);
    const schema = { properties, required, order: sig.args.map((a) => a.name) };
    out[file] = { args: sig.args, schema, auto_kind: sig.auto_kind ?? null };
  }
} else if (command === "imports") {
  pyImports.initSync({ module: wasm("windmill-parser-wasm-py-imports") });
  out = pyImports.parse_py_relative_imports(readFileSync(rest[1], "utf8"), rest[0]);
} else if (command === "validate-flow") {
  const { WindmillYamlValidator } = await import("windmill-yaml-validator");
  const { errors } = new WindmillYamlValidator().validate(readFileSync(rest[0], "utf8"), { type: "flow" });
  out = { errors: errors.map((e) => `${e.instancePath || "/"} ${e.message}`) };
} else {
  console.error("usage: windmill_tools.mjs signature FILE... | imports PATH FILE | validate-flow FILE");
  process.exit(2);
}
console.log(JSON.stringify(out));
