"""How we talk to the database (PostgreSQL or SQLite), floor by floor:
`errors` (the one translation of SQLAlchemy's and psycopg's exceptions) → `schema` (engines,
Alembic) and `candles` (the candle repository, its column list and time codec) → `gaps`,
`archive` (COPY of archive files) and `reader` (Arrow tables for the read API)."""
