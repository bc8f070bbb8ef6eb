// Reads a symbol's bars the way a TypeScript service does: resolve the symbol to its company as of a date, then read
// that company's series. Usage: node read_symbol.mjs SYMBOL TIMEFRAME START END [AS_OF]
// START and END are ISO 8601 instants, AS_OF a New York date (YYYY-MM-DD; default the current trading day). Prints one
// JSON object: the company's Alpaca id and every bar with START <= timestamp <= END (epoch seconds, numbers).
import { GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { bucketRange, client, holderOn, holdersOf, itemBars, today } from './bars_reader.mjs';

const [symbol, timeframe, start, end, asOf] = process.argv.slice(2);
const { Item } = await client.send(new GetItemCommand({
  TableName: process.env.SIGNAL9_ASSETS_TABLE, Key: { asset_id: { S: `ASSET#${symbol}` } }, ProjectionExpression: 'holders' }));
const { alpacaId } = holderOn(symbol, holdersOf(Item), asOf || today());
const { first, last } = bucketRange(start, end, timeframe);
const [lo, hi] = [Date.parse(start) / 1000, Date.parse(end) / 1000];
const bars = [];
let ExclusiveStartKey;
do {
  const page = await client.send(new QueryCommand({
    TableName: process.env.SIGNAL9_MARKET_DATA_TABLE, ExclusiveStartKey,
    KeyConditionExpression: 'series = :series AND #day BETWEEN :first AND :last',
    ExpressionAttributeNames: { '#day': 'day' },
    ExpressionAttributeValues: { ':series': { S: `${alpacaId}#${timeframe}` }, ':first': { S: first }, ':last': { S: last } } }));
  for (const item of page.Items) bars.push(...itemBars(item, lo, hi));
  ExclusiveStartKey = page.LastEvaluatedKey;
} while (ExclusiveStartKey);
bars.sort((a, b) => a.timestamp - b.timestamp);
process.stdout.write(JSON.stringify({ alpacaId, bars }));
