// src/schema.ts from openapi.json (what `aijobs openapi` prints), with openapi-typescript.
//   node scripts/generate.mjs           write src/schema.ts from openapi.json
//   node scripts/generate.mjs --check   exit 1 if src/schema.ts is not what openapi.json generates
// `make client-types` writes openapi.json from the current code first; the drift test runs
// --check after comparing openapi.json with the current spec.
import { readFile, writeFile } from "node:fs/promises";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const root = new URL("../", import.meta.url);
const specUrl = new URL("openapi.json", root);
const outUrl = new URL("src/schema.ts", root);

const spec = JSON.parse(await readFile(specUrl, "utf8"));
// defaultNonNullable false: a field with a default (priority) stays optional in request bodies.
const ast = await openapiTS(spec, { defaultNonNullable: false });
const generated = COMMENT_HEADER + astToString(ast);

if (process.argv.includes("--check")) {
  const committed = await readFile(outUrl, "utf8").catch(() => "");
  if (committed !== generated) {
    console.error("src/schema.ts is out of date with openapi.json: run `make client-types` and commit both");
    process.exit(1);
  }
  console.log("src/schema.ts matches openapi.json");
} else {
  await writeFile(outUrl, generated);
  console.log("wrote src/schema.ts");
}
