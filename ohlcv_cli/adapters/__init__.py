"""Adapters, one home per system the product talks to:

- `binance/`: Binance itself: REST through ccxt (`rest`), the websocket streams (`ws`), the public
  archive of data.binance.vision (`archive`).
- `sql/`: the database through SQLAlchemy, psycopg and Alembic: `errors` (the one boundary every
  SQL adapter translates through), `schema`, `candles`, `gaps`, `archive` (the archive writer),
  `reader`.
- `kafka`: the topic through kafka-python (publisher, consumer, admin).
- `files/`: what leaves the process as files: `frames` (pandas, polars), `export`, `charts`.
- `prometheus`: the metrics endpoint.
"""
