// Validates an AsyncAPI document with the official parser (@asyncapi/parser,
// with @asyncapi/avro-schema-parser so the Avro payload schema is checked
// too), then prints what it parsed as one JSON object:
// {"errors": [...], "warnings": [...], "channels": [{"id", "address", "messages"}]}.
// Exit 1 when the parser reports an error or returns no document.
//
//   node tests/node/asyncapi_check.cjs NODE_MODULES_DIR schemas/asyncapi.yaml
//
// Used by tests/asyncapi.rs; scripts/test.sh installs the parser into
// target/asyncapi-node.
const fs = require("fs");
const path = require("path");

async function main() {
  const [modules, file] = process.argv.slice(2).map((p) => path.resolve(p));
  const { Parser } = require(path.join(modules, "@asyncapi/parser"));
  const { AvroSchemaParser } = require(path.join(modules, "@asyncapi/avro-schema-parser"));
  const parser = new Parser();
  parser.registerSchemaParser(AvroSchemaParser());
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"));
  const show = (d) => `${d.code} at ${d.path.join(".")}: ${d.message}`;
  const errors = diagnostics.filter((d) => d.severity === 0).map(show);
  const warnings = diagnostics.filter((d) => d.severity === 1).map(show);
  const channels = document
    ? document.channels().all().map((c) => ({
        id: c.id(),
        address: c.address(),
        messages: c.messages().all().map((m) => m.id()),
      }))
    : [];
  process.stdout.write(JSON.stringify({ errors, warnings, channels }) + "\n");
  return errors.length === 0 && document ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
