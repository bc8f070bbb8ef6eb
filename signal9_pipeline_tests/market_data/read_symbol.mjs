// Reads a symbol's bars the way a TypeScript service does: resolve the symbol to its company as of a date, then read
// that company's series. Usage: node read_symbol.mjs SYMBOL TIMEFRAME START END [AS_OF]
// START and END are ISO 8601 instants, AS_OF a New York date (YYYY-MM-DD; default the current trading day: New York's
// date, and after the extended hours end at 20:00 the next one's, as the pipeline dates symbols). Tables and endpoint come
// from SIGNAL9_ASSETS_TABLE, SIGNAL9_MARKET_DATA_TABLE and AWS_ENDPOINT_URL_DYNAMODB (unset: AWS). Prints one JSON
// object: the company's Alpaca id and every bar with START <= timestamp <= END (epoch seconds, numbers).
import { DynamoDBClient, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { tableFromIPC } from 'apache-arrow';

const [symbol, timeframe, start, end, asOfArgument] = process.argv.slice(2);
const client = new DynamoDBClient({
  endpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB || undefined,
  region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION,  // the SDK for JavaScript reads only AWS_REGION
});

// The company `symbol` meant on `day`: the holder whose [start, end) holds it, else its last holder before that
// day (a symbol nobody holds any more, as Alpaca maps it); no holder then is an error naming the holders known.
function holderOn(holders, day) {
  const holding = holders.filter((h) => (!h.start || h.start <= day) && (!h.end || day < h.end));
  if (holding.length) return holding[holding.length - 1];
  const before = holders.filter((h) => h.end && h.end <= day).sort((a, b) => a.end.localeCompare(b.end));
  if (before.length) return before[before.length - 1];
  throw new Error(`no company held ${symbol} on ${day}; holders: ${JSON.stringify(holders)}`);
}

async function resolve(day) {
  const { Item } = await client.send(new GetItemCommand({
    TableName: process.env.SIGNAL9_ASSETS_TABLE, Key: { asset_id: { S: `ASSET#${symbol}` } },
    ProjectionExpression: 'holders' }));
  const holders = (Item?.holders?.L ?? []).map(({ M }) => ({
    alpacaId: M.alpaca_id.S, start: M.start?.S, end: M.end?.S }));
  return holderOn(holders, day).alpacaId;
}

// An item's sort key is the first day of its bucket: a day of 1Min and 5Min bars, a week (from Monday) of 15Min
// and 30Min, a month of 1Hour, a year of 1Day.
function bucketStart(day, tf) {
  const d = new Date(`${day}T00:00:00Z`);
  if (tf === '15Min' || tf === '30Min') d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  if (tf === '1Hour') d.setUTCDate(1);
  if (tf === '1Day') d.setUTCMonth(0, 1);
  return d.toISOString().slice(0, 10);
}

const dayOf = (iso, shift) => new Date(Date.parse(iso) + shift * 86_400_000).toISOString().slice(0, 10);
const asOf = asOfArgument || new Intl.DateTimeFormat('en-CA', { timeZone: 'America/New_York' })
  .format(new Date(Date.now() + 4 * 3_600_000));
const alpacaId = await resolve(asOf);
const [first, last] = [bucketStart(dayOf(start, -1), timeframe), dayOf(end, 1)];  // bars may carry the next UTC date
const [lo, hi] = [Date.parse(start) / 1000, Date.parse(end) / 1000];
const bars = [];
let ExclusiveStartKey;
do {
  const page = await client.send(new QueryCommand({
    TableName: process.env.SIGNAL9_MARKET_DATA_TABLE, ExclusiveStartKey,
    KeyConditionExpression: 'series = :series AND #day BETWEEN :first AND :last',
    ExpressionAttributeNames: { '#day': 'day' },
    ExpressionAttributeValues: { ':series': { S: `${alpacaId}#${timeframe}` }, ':first': { S: first }, ':last': { S: last } } }));
  for (const item of page.Items) {
    const block = Buffer.from(item.bars.B);
    if (createHash('sha256').update(block).digest('hex').slice(0, 32) !== item.checksum.S) {
      throw new Error(`${item.series.S} ${item.day.S} fails its checksum`);
    }
    const table = tableFromIPC(gunzipSync(block));
    const columns = Object.fromEntries(table.schema.fields.map((f) => [f.name, table.getChild(f.name).toArray()]));
    columns.timestamp.forEach((t, i) => {
      const seconds = Number(t);
      if (seconds < lo || seconds > hi) return;
      bars.push({ timestamp: seconds, ...Object.fromEntries(['open', 'high', 'low', 'close', 'volume', 'trade_count', 'vwap']
        .map((c) => [c, Number(columns[c][i])])) });
    });
  }
  ExclusiveStartKey = page.LastEvaluatedKey;
} while (ExclusiveStartKey);
bars.sort((a, b) => a.timestamp - b.timestamp);
process.stdout.write(JSON.stringify({ alpacaId, bars }));
