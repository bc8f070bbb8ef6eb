// What a TypeScript service needs to read Signal9's bars: the DynamoDB client, the rule that maps a symbol to its
// company on a date, the buckets a window spans, and an item's checked, decoded bars. Used by read_symbol.mjs (one
// symbol, a paged Query) and read_symbols.mjs (many symbols, BatchGetItem). Tables and endpoint come from
// SIGNAL9_ASSETS_TABLE, SIGNAL9_MARKET_DATA_TABLE and AWS_ENDPOINT_URL_DYNAMODB (unset: AWS).
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { tableFromIPC } from 'apache-arrow';

export const client = new DynamoDBClient({
  endpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB || undefined,
  region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION,  // the SDK for JavaScript reads only AWS_REGION
});
export const COLUMNS = ['open', 'high', 'low', 'close', 'volume', 'trade_count', 'vwap'];

// The current trading day: New York's date, and after the extended hours end at 20:00 the next one's, as the
// pipeline dates symbols.
export const today = () => new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York' })
  .format(new Date(Date.now() + 4 * 3_600_000));

// The holders an `ASSET#{symbol}` item lists, in time order.
export const holdersOf = (item) => (item?.holders?.L ?? []).map(({ M }) => ({
  alpacaId: M.alpaca_id.S, start: M.start?.S, end: M.end?.S }));

// The company `symbol` meant on `day`: the holder whose [start, end) holds it, else its last holder before that
// day (a symbol nobody holds any more, as Alpaca maps it); no holder then is an error naming the holders known.
export function holderOn(symbol, holders, day) {
  const holding = holders.filter((h) => (!h.start || h.start <= day) && (!h.end || day < h.end));
  if (holding.length) return holding[holding.length - 1];
  const before = holders.filter((h) => h.end && h.end <= day).sort((a, b) => a.end.localeCompare(b.end));
  if (before.length) return before[before.length - 1];
  throw new Error(`no company held ${symbol} on ${day}; holders: ${JSON.stringify(holders)}`);
}

// An item's sort key is the first day of its bucket: a day of 1Min and 5Min bars, a week (from Monday) of 15Min
// and 30Min, a month of 1Hour, a year of 1Day.
export function bucketStart(day, tf) {
  const d = new Date(`${day}T00:00:00Z`);
  if (tf === '15Min' || tf === '30Min') d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  if (tf === '1Hour') d.setUTCDate(1);
  if (tf === '1Day') d.setUTCMonth(0, 1);
  return d.toISOString().slice(0, 10);
}

export const dayOf = (iso, shift) => new Date(Date.parse(iso) + shift * 86_400_000).toISOString().slice(0, 10);

// The bucket keys that can hold bars of [start, end]: bars may carry the UTC dates next to their trading day.
export function bucketRange(start, end, tf) {
  const [first, last] = [bucketStart(dayOf(start, -1), tf), dayOf(end, 1)];
  const keys = new Set();
  for (let day = first; day <= last; day = dayOf(`${day}T00:00:00Z`, 1)) keys.add(bucketStart(day, tf));
  return { first, last, keys: [...keys] };
}

// An item's bars with start <= timestamp <= end (epoch seconds), its checksum checked, withdrawn bars (kept in the
// table, no longer answered by Alpaca) left out.
export function itemBars(item, lo, hi) {
  const block = Buffer.from(item.bars.B);
  if (createHash('sha256').update(block).digest('hex').slice(0, 32) !== item.checksum.S) {
    throw new Error(`${item.series.S} ${item.day.S} fails its checksum`);
  }
  const table = tableFromIPC(gunzipSync(block));
  const columns = Object.fromEntries(table.schema.fields.map((f) => [f.name, table.getChild(f.name).toArray()]));
  const withdrawn = new Set(Object.keys(item.withdrawn?.M ?? {}).map(Number));
  const bars = [];
  columns.timestamp.forEach((t, i) => {
    const seconds = Number(t);
    if (seconds < lo || seconds > hi || withdrawn.has(seconds)) return;
    bars.push({ timestamp: seconds, ...Object.fromEntries(COLUMNS.map((c) => [c, Number(columns[c][i])])) });
  });
  return bars;
}
