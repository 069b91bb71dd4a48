// The tables, as DESIGN.md fixes them (same names and columns in DuckDB, MySQL and Delta).
// Times are TIMESTAMP values holding UTC (millisecond precision), like Spark's.

//
// trade_windows and price_trends are keyed by (asset, window_start, window_end), one row per key, but
// DuckDB holds no PRIMARY KEY for them: the store keeps the key itself (KeyedRows in duckdb-store.ts
// appends a row only when no row with its key can be stored, and replaces the others). An index cost
// more than the rest of writing them: 8 batches of 11k windows and 11k trends took ~570 ms with the
// keys and ~225 ms without, and at 1M replayed trades the windows were the DuckDB thread's largest
// cost. Stores made with the keys by earlier versions keep them and are written the same way.
export const DUCKDB_SCHEMA = `
CREATE TABLE IF NOT EXISTS trade_windows (
  asset          VARCHAR   NOT NULL,
  window_start   TIMESTAMP NOT NULL,
  window_end     TIMESTAMP NOT NULL,
  trades         BIGINT    NOT NULL,
  total_volume   DOUBLE    NOT NULL,
  total_amount   DOUBLE    NOT NULL,
  average_price  DOUBLE    NOT NULL,
  vwap           DOUBLE    NOT NULL,
  open           DOUBLE    NOT NULL,
  high           DOUBLE    NOT NULL,
  low            DOUBLE    NOT NULL,
  close          DOUBLE    NOT NULL,
  buy_volume     DOUBLE    NOT NULL,
  sell_volume    DOUBLE    NOT NULL,
  is_final       BOOLEAN   NOT NULL,
  updated_at     TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS price_trends (
  asset          VARCHAR   NOT NULL,
  window_start   TIMESTAMP NOT NULL,
  window_end     TIMESTAMP NOT NULL,
  vwap           DOUBLE    NOT NULL,
  prev_vwap      DOUBLE,
  trend          VARCHAR,
  avg_price_6m   DOUBLE    NOT NULL,
  change_6m_pct  DOUBLE    NOT NULL,
  windows_6m     INTEGER   NOT NULL,
  is_final       BOOLEAN   NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_trades (
  received_at    TIMESTAMP NOT NULL,
  source         VARCHAR   NOT NULL,
  reason         VARCHAR   NOT NULL,
  detail         VARCHAR   NOT NULL,
  raw            VARCHAR   NOT NULL
);
-- The embedded log of accepted trades. What repeats from trade to trade (exchange, base, quote,
-- direction) is stored once in trade_keys and referenced by id, because appending strings is the slow
-- part of writing a million trades; the \`trades\` view reads the log back with the message's columns.
CREATE TABLE IF NOT EXISTS trade_keys (
  id             UINTEGER  PRIMARY KEY,
  exchange       VARCHAR   NOT NULL,
  base           VARCHAR   NOT NULL,
  quote          VARCHAR   NOT NULL,
  direction      VARCHAR   NOT NULL,
  UNIQUE (exchange, base, quote, direction)
);
CREATE TABLE IF NOT EXISTS trade_log (
  key_id         UINTEGER  NOT NULL,
  price          DOUBLE    NOT NULL,
  volume         DOUBLE    NOT NULL,
  "timestamp"    TIMESTAMP NOT NULL,
  price_usd      DOUBLE    NOT NULL,
  trade_id       VARCHAR,
  received_at    TIMESTAMP
);
-- Where each job is (DESIGN.md, Recovery), written in the same transaction as each batch's rows: the
-- row with source '*' holds the engine's state after the batch, one row per file source its position
-- ({"offset": byte after the last line read, "line": that line's number}).
CREATE TABLE IF NOT EXISTS stream_progress (
  job            VARCHAR   NOT NULL,
  source         VARCHAR   NOT NULL,
  position       VARCHAR,
  watermark      DOUBLE    NOT NULL,
  batch_id       BIGINT    NOT NULL,
  settings       VARCHAR   NOT NULL,
  engine_state   VARCHAR,
  finished       BOOLEAN   NOT NULL,
  updated_at     TIMESTAMP NOT NULL,
  PRIMARY KEY (job, source)
);
-- Keys are looked up in a list (built once per query) rather than joined: a scan plus a projection
-- keeps the log's insertion order, which is arrival order; a join would not.
CREATE OR REPLACE VIEW trades AS
WITH k AS (SELECT list({'exchange': exchange, 'base': base, 'quote': quote, 'direction': direction} ORDER BY id) AS by_id FROM trade_keys)
SELECT k.by_id[l.key_id + 1].exchange AS exchange, k.by_id[l.key_id + 1].base AS base, k.by_id[l.key_id + 1].quote AS quote,
       k.by_id[l.key_id + 1].direction AS direction,
       l.price, l.volume, l."timestamp", l.price_usd, l.trade_id, l.received_at
FROM trade_log l, k;
`;

/** A store written by the first layout of the log (names by id, times as doubles) cannot be appended to. */
export const OLD_LOG_LAYOUT_CHECK = `SELECT count(*) AS n FROM duckdb_columns() WHERE table_name = 'trade_log' AND column_name = 'exchange_id'`;
