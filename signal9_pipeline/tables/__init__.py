"""One module per DynamoDB table: its keys, item kinds, markers, projections and index queries.

Every other module asks these for a key or a query, so a change of layout happens in one place.
They take the DynamoDB resource as an argument and import no AWS SDK themselves: their pure parts
(keys, projections) load anywhere.
"""
