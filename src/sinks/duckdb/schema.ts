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
CREATE TABLE IF NOT EXISTS trades (
  exchange       VARCHAR   NOT NULL,
  base           VARCHAR   NOT NULL,
  quote          VARCHAR   NOT NULL,
  direction      VARCHAR   NOT NULL,
  price          DOUBLE    NOT NULL,
  volume         DOUBLE    NOT NULL,
  "timestamp"    TIMESTAMP NOT NULL,
  price_usd      DOUBLE    NOT NULL,
  trade_id       VARCHAR,
  received_at    TIMESTAMP
);
`;
