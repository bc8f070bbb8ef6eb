// Decodes bar blocks the way a TypeScript service would: node's zlib and crypto, plus the pinned apache-arrow.
// Usage: node decode_blocks.mjs BLOCK_FILE...; prints one JSON object keyed by file name, each entry holding
// the checksum, the schema as Arrow JS sees it and every column (epoch seconds, numbers; non-finite floats
// as the strings "NaN", "Infinity", "-Infinity", which JSON cannot carry as numbers).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tableFromIPC } from 'apache-arrow';

function value(v) {
  if (typeof v === 'bigint') {
    if (!Number.isSafeInteger(Number(v))) throw new Error(`${v} is beyond what a JSON number holds exactly`);
    return Number(v);
  }
  return Number.isFinite(v) ? v : String(v);
}

function decode(block) {
  const table = tableFromIPC(gunzipSync(block));
  return {
    checksum: createHash('sha256').update(block).digest('hex').slice(0, 32),
    metadata: Object.fromEntries(table.schema.metadata),
    fields: table.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    batches: table.batches.length,
    columns: Object.fromEntries(table.schema.fields.map(
      (f) => [f.name, Array.from(table.getChild(f.name).toArray(), value)])),
  };
}

const decoded = Object.fromEntries(process.argv.slice(2).map((path) => [basename(path), decode(readFileSync(path))]));
process.stdout.write(JSON.stringify(decoded));
