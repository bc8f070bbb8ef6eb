// Reads many symbols' bars at once, as a TypeScript service screening a universe does: the symbols' `ASSET#` items
// and then every bucket the window spans are fetched with BatchGetItem (100 keys a request, UnprocessedKeys retried,
// a few requests in flight). Usage: node read_symbols.mjs SYMBOL,SYMBOL,... TIMEFRAME START END [AS_OF]
// Prints one JSON object: symbol -> Alpaca id, and every bar with its symbol, in the order of the symbols given,
// each symbol's bars in time order (what read_bars(symbols, ...) returns).
import { BatchGetItemCommand } from '@aws-sdk/client-dynamodb';
import { bucketRange, client, holderOn, holdersOf, itemBars, today } from './bars_reader.mjs';

const [symbolList, timeframe, start, end, asOf] = process.argv.slice(2);
const symbols = [...new Set(symbolList.split(','))];
const IN_FLIGHT = 8;

// Every item with these keys (missing ones omitted), 100 keys a request, IN_FLIGHT requests at once.
async function batchGet(table, keys, projection) {
  const chunks = [];
  for (let i = 0; i < keys.length; i += 100) chunks.push(keys.slice(i, i + 100));
  const found = [];
  const worker = async () => {
    for (let chunk = chunks.shift(); chunk; chunk = chunks.shift()) {
      for (let attempt = 0, pending = chunk; pending.length; attempt += 1) {
        if (attempt > 8) throw new Error(`${pending.length} keys of ${table} still unprocessed`);
        if (attempt) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
        const answer = await client.send(new BatchGetItemCommand({ RequestItems: { [table]: {
          Keys: pending, ...projection } } }));
        found.push(...(answer.Responses?.[table] ?? []));
        pending = answer.UnprocessedKeys?.[table]?.Keys ?? [];
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return found;
}

const views = await batchGet(process.env.SIGNAL9_ASSETS_TABLE, symbols.map((s) => ({ asset_id: { S: `ASSET#${s}` } })),
  { ProjectionExpression: 'asset_id, holders' });
const bySymbol = Object.fromEntries(views.map((v) => [v.asset_id.S.slice('ASSET#'.length), holdersOf(v)]));
const day = asOf || today();
const unknown = symbols.filter((s) => !bySymbol[s]);
if (unknown.length) throw new Error(`no company held ${unknown.join(', ')} on ${day}: the assets table never held them`);
const alpacaIds = Object.fromEntries(symbols.map((s) => [s, holderOn(s, bySymbol[s], day).alpacaId]));
const { keys } = bucketRange(start, end, timeframe);
const items = await batchGet(process.env.SIGNAL9_MARKET_DATA_TABLE, Object.values(alpacaIds).flatMap(
  (id) => keys.map((k) => ({ series: { S: `${id}#${timeframe}` }, day: { S: k } }))),
{ ProjectionExpression: 'series, #d, bars, checksum, withdrawn', ExpressionAttributeNames: { '#d': 'day' } });
const [lo, hi] = [Date.parse(start) / 1000, Date.parse(end) / 1000];
const byCompany = {};
for (const item of items) (byCompany[item.series.S.split('#')[0]] ??= []).push(...itemBars(item, lo, hi));
const bars = symbols.flatMap((s) => (byCompany[alpacaIds[s]] ?? []).sort((a, b) => a.timestamp - b.timestamp)
  .map((bar) => ({ symbol: s, ...bar })));
process.stdout.write(JSON.stringify({ alpacaIds, bars }));
