// The tables, as DESIGN.md fixes them (same names and columns in DuckDB, MySQL and Delta).
// Times are TIMESTAMP values holding UTC (millisecond precision), like Spark's.

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
  updated_at     TIMESTAMP NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
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
  is_final       BOOLEAN   NOT NULL,
  PRIMARY KEY (asset, window_start, window_end)
);
CREATE TABLE IF NOT EXISTS rejected_trades (
  received_at    TIMESTAMP NOT NULL,
  source         VARCHAR   NOT NULL,
  reason         VARCHAR   NOT NULL,
  detail         VARCHAR   NOT NULL,
  raw            VARCHAR   NOT NULL
);
-- The embedded log of accepted trades. Stored with its repeated strings (exchange, base, quote) as ids
-- into trade_names, because appending strings is the slow part of writing a million trades; the
-- \`trades\` view reads it back with the trade message's columns.
CREATE TABLE IF NOT EXISTS trade_names (
  id             UINTEGER  PRIMARY KEY,
  name           VARCHAR   NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS trade_log (
  exchange_id    UINTEGER  NOT NULL,
  base_id        UINTEGER  NOT NULL,
  quote_id       UINTEGER  NOT NULL,
  is_buy         BOOLEAN   NOT NULL,
  price          DOUBLE    NOT NULL,
  volume         DOUBLE    NOT NULL,
  timestamp_ms   DOUBLE    NOT NULL,
  price_usd      DOUBLE    NOT NULL,
  trade_id       VARCHAR,
  received_at_ms DOUBLE    NOT NULL  -- NaN when unknown
);
-- Names are looked up in a list (built once per query) rather than joined: a scan plus a projection
-- keeps the log's insertion order, which is arrival order; a join would not.
CREATE OR REPLACE VIEW trades AS
WITH names AS (SELECT list(name ORDER BY id) AS by_id FROM trade_names)
SELECT names.by_id[l.exchange_id + 1] AS exchange, names.by_id[l.base_id + 1] AS base, names.by_id[l.quote_id + 1] AS quote,
       CASE WHEN l.is_buy THEN 'buy' ELSE 'sell' END AS direction,
       l.price, l.volume, epoch_ms(CAST(l.timestamp_ms AS BIGINT)) AS "timestamp", l.price_usd, l.trade_id,
       CASE WHEN isnan(l.received_at_ms) THEN NULL ELSE epoch_ms(CAST(l.received_at_ms AS BIGINT)) END AS received_at
FROM trade_log l, names;
`;
