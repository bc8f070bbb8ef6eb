#!/usr/bin/env node
// dynalite, the local DynamoDB, started with one guard. A client that dies mid-request (a run killed while
// its writer threads were sending) resets its connection, and dynalite's request handler rethrows that reset,
// which ends the whole server; the local DynamoDB must outlive any one client.
process.on('uncaughtException', (err) => {
  if (err && err.code === 'ECONNRESET') {
    console.error(`ignored a request its client aborted: ${err.message}`)
    return
  }
  throw err
})
require('dynalite/cli')
