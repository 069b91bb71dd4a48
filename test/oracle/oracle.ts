// An independent oracle: what the stores must hold for a replay file, computed in plain DuckDB SQL
// straight from the file and the contract (DESIGN.md, "Window semantics" and "Tables"). It shares no
// code with the engine: no panes, no incremental state, no JavaScript arithmetic.
import type { DuckDBConnection } from '@duckdb/node-api';

export interface OracleOptions {
  windowMs: number;
  slideMs: number;
  watermarkMs: number;
  trendSpanMs: number;
  /** --window-offset: windows start at offset + k * slide from the epoch (0 <= offset < slide). Default 0. */
  offsetMs?: number;
}

export const DEFAULT_ORACLE: OracleOptions = { windowMs: 60_000, slideMs: 60_000, watermarkMs: 300_000, trendSpanMs: 360_000, offsetMs: 0 };

const sqlPath = (p: string) => `'${p.replace(/'/g, "''")}'`;

/**
 * Creates temp tables oracle_lines, oracle_trades, oracle_windows, oracle_trends for `file`.
 * oracle_lines.verdict is 'accepted' | 'late' | 'malformed' | 'invalid' | 'blank'.
 */
export async function runOracle(conn: DuckDBConnection, file: string, o: OracleOptions): Promise<void> {
  const { windowMs: W, slideMs: S, watermarkMs: D, trendSpanMs: SPAN, offsetMs: O = 0 } = o;
  if (!(O >= 0 && O < S)) throw new Error(`oracle: offsetMs (${O}) must be in [0, slideMs = ${S})`);
  // The start of the last window holding a trade at ts: windows start at O + k * S.
  const LAST_START = `(floor((ts - ${O}) / ${S}) * ${S} + ${O})`;
  const NUMERIC = `('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT')`;
  await conn.run(`
    -- 1. Lines, numbered in file order (arrival order), CR stripped.
    CREATE OR REPLACE TEMP TABLE oracle_raw AS
    SELECT unnest(generate_series(1, len(parts))) AS n, rtrim(unnest(parts), chr(13)) AS line
    FROM (SELECT string_split(content, chr(10)) AS parts FROM read_text(${sqlPath(file)}));

    -- 2. The contract's checks, field by field. A JSON number counts whatever DuckDB calls it;
    --    a timestamp must be integral (1.6e12 and 1600000000000.0 are integers in JSON's number model).
    -- Materialised on its own, so that no JSON function downstream ever sees text that is not JSON.
    CREATE OR REPLACE TEMP TABLE oracle_parsed AS
    SELECT n, line, trim(line) = '' AS blank, json_valid(line) AS valid FROM oracle_raw;
    CREATE OR REPLACE TEMP TABLE oracle_objects AS
    SELECT n, line, blank, CASE WHEN valid THEN line END AS doc FROM oracle_parsed;

    CREATE OR REPLACE TEMP TABLE oracle_lines AS
    WITH objects AS (
      SELECT n, line, blank, coalesce(json_type(doc) = 'OBJECT', false) AS is_object, CASE WHEN json_type(doc) = 'OBJECT' THEN doc END AS obj FROM oracle_objects
    ), typed AS (
      SELECT n, obj AS line, line AS text, blank, is_object,
        json_type(obj, '$.exchange') AS t_exchange, json_type(obj, '$.base') AS t_base,
        json_type(obj, '$.quote') AS t_quote, json_type(obj, '$.direction') AS t_direction,
        json_type(obj, '$.price') AS t_price, json_type(obj, '$.volume') AS t_volume,
        json_type(obj, '$.timestamp') AS t_timestamp, json_type(obj, '$.priceUsd') AS t_price_usd,
        json_type(obj, '$.tradeId') AS t_trade_id, json_type(obj, '$.receivedAt') AS t_received_at
      FROM objects
    ), valued AS (
      SELECT *,
        CASE WHEN is_object THEN json_extract_string(line, '$.base') END AS base,
        CASE WHEN is_object THEN json_extract_string(line, '$.direction') END AS direction,
        CASE WHEN is_object AND t_price IN ${NUMERIC} THEN CAST(json_extract(line, '$.price') AS DOUBLE) END AS price,
        CASE WHEN is_object AND t_volume IN ${NUMERIC} THEN CAST(json_extract(line, '$.volume') AS DOUBLE) END AS volume,
        CASE WHEN is_object AND t_timestamp IN ${NUMERIC} THEN CAST(json_extract(line, '$.timestamp') AS DOUBLE) END AS ts,
        CASE WHEN is_object AND t_price_usd IN ${NUMERIC} THEN CAST(json_extract(line, '$.priceUsd') AS DOUBLE) END AS price_usd
      FROM typed
    )
    SELECT n, text AS line, base, direction, price, volume, ts, price_usd,
      CASE
        WHEN blank THEN 'blank'
        WHEN NOT is_object THEN 'malformed'
        WHEN t_base IS DISTINCT FROM 'VARCHAR' OR base = '' THEN 'invalid'
        WHEN t_exchange IS DISTINCT FROM 'VARCHAR' OR t_quote IS DISTINCT FROM 'VARCHAR' THEN 'invalid'
        WHEN t_direction IS DISTINCT FROM 'VARCHAR' OR direction NOT IN ('buy', 'sell') THEN 'invalid'
        WHEN length(base) > 200 OR length(json_extract_string(line, '$.exchange')) > 200 OR length(json_extract_string(line, '$.quote')) > 200 THEN 'invalid'
        -- Ids with a control character (an escaped NUL, say): not every store can keep them.
        WHEN regexp_matches(base || coalesce(json_extract_string(line, '$.exchange'), '') || coalesce(json_extract_string(line, '$.quote'), '') || coalesce(json_extract_string(line, '$.tradeId'), ''), '[\\x00-\\x1f\\x7f]') THEN 'invalid'
        WHEN price IS NULL OR NOT isfinite(price) OR price <= 0 THEN 'invalid'
        WHEN volume IS NULL OR NOT isfinite(volume) OR volume <= 0 THEN 'invalid'
        WHEN price_usd IS NULL OR NOT isfinite(price_usd) OR price_usd <= 0 THEN 'invalid'
        -- Sums of values outside this range overflow or lose their precision.
        WHEN volume < 1e-50 OR volume > 1e50 OR price_usd < 1e-50 OR price_usd > 1e50 THEN 'invalid'
        WHEN ts IS NULL OR ts <> floor(ts) OR ts < 0 OR ts > 8.64e15 THEN 'invalid'
        -- Plausible event times: not before 2009-01-03, not more than a day after the line was read.
        WHEN ts < ${Date.UTC(2009, 0, 3)} OR ts > epoch_ms(now()) + 86400000 THEN 'invalid'
        WHEN t_trade_id IS NOT NULL AND t_trade_id NOT IN ('VARCHAR', 'NULL', 'BIGINT', 'UBIGINT', 'DOUBLE') THEN 'invalid'
        WHEN t_trade_id = 'VARCHAR' AND length(json_extract_string(line, '$.tradeId')) > 200 THEN 'invalid'
        WHEN t_received_at IS NOT NULL AND t_received_at NOT IN ('NULL', ${NUMERIC.slice(1, -1)}) THEN 'invalid'
        ELSE 'valid'
      END AS verdict
    FROM valued;

    -- 3. Watermark before each trade = max event time of the earlier valid trades - delay. (Late trades
    --    never raise that max: their time is below it.) A trade is late when the last window holding
    --    it, starting at floor((ts - offset) / slide) * slide + offset, ends at or before that watermark.
    CREATE OR REPLACE TEMP TABLE oracle_trades AS
    WITH ordered AS (
      SELECT *, max(ts) OVER (ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) - ${D} AS wm_before
      FROM oracle_lines WHERE verdict = 'valid'
    )
    SELECT *, ${LAST_START} AS last_start,
      (wm_before IS NOT NULL AND ${LAST_START} + ${W} <= wm_before) AS late
    FROM ordered;

    UPDATE oracle_lines SET verdict = CASE WHEN t.late THEN 'late' ELSE 'accepted' END
    FROM oracle_trades t WHERE oracle_lines.n = t.n;

    -- 4. Every window a trade belongs to, except those already final when it arrived.
    CREATE OR REPLACE TEMP TABLE oracle_members AS
    SELECT t.*, t.last_start - k.k * ${S} AS window_start
    FROM oracle_trades t, range(0, ${Math.ceil(W / S)}) k(k)
    WHERE NOT t.late
      AND t.last_start - k.k * ${S} > t.ts - ${W}
      AND (t.wm_before IS NULL OR t.last_start - k.k * ${S} + ${W} > t.wm_before);

    CREATE OR REPLACE TEMP TABLE oracle_windows AS
    SELECT base AS asset, window_start, window_start + ${W} AS window_end,
      count(*) AS trades, sum(volume) AS total_volume, sum(volume * price_usd) AS total_amount,
      avg(price_usd) AS average_price, sum(volume * price_usd) / sum(volume) AS vwap,
      first(price_usd ORDER BY ts, n) AS open, max(price_usd) AS high, min(price_usd) AS low,
      first(price_usd ORDER BY ts DESC, n DESC) AS close,
      coalesce(sum(volume) FILTER (WHERE direction = 'buy'), 0) AS buy_volume,
      coalesce(sum(volume) FILTER (WHERE direction = 'sell'), 0) AS sell_volume
    FROM oracle_members GROUP BY base, window_start;

    -- 5. Trends: previous non-empty window; the span [end - span, end) over trades that were
    --    aggregated and arrived before the window was final; windows contained in the span.
    CREATE OR REPLACE TEMP TABLE oracle_trends AS
    WITH prev AS (
      SELECT *, lag(vwap) OVER (PARTITION BY asset ORDER BY window_start) AS prev_vwap FROM oracle_windows
    ), span_trades AS (
      SELECT w.asset, w.window_start, sum(t.volume * t.price_usd) / sum(t.volume) AS avg_price_6m
      FROM oracle_windows w JOIN oracle_trades t
        ON t.base = w.asset AND NOT t.late AND t.ts >= w.window_end - ${SPAN} AND t.ts < w.window_end
       AND (t.wm_before IS NULL OR t.wm_before < w.window_end)
      GROUP BY w.asset, w.window_start
    ), span_windows AS (
      SELECT w.asset, w.window_start, count(*) AS windows_6m, first(x.vwap ORDER BY x.window_start) AS first_vwap
      FROM oracle_windows w JOIN oracle_windows x
        ON x.asset = w.asset AND x.window_start >= w.window_end - ${SPAN} AND x.window_end <= w.window_end
      GROUP BY w.asset, w.window_start
    )
    SELECT p.asset, p.window_start, p.window_end, p.vwap, p.prev_vwap,
      CASE WHEN p.prev_vwap IS NULL THEN NULL
           WHEN abs(p.vwap - p.prev_vwap) <= 1e-9 * greatest(abs(p.vwap), abs(p.prev_vwap)) THEN 'flat'
           WHEN p.vwap > p.prev_vwap THEN 'up' ELSE 'down' END AS trend,
      s.avg_price_6m, (p.vwap - sw.first_vwap) / sw.first_vwap * 100 AS change_6m_pct, sw.windows_6m
    FROM prev p
    JOIN span_trades s USING (asset, window_start)
    JOIN span_windows sw USING (asset, window_start);
  `);
}

const WINDOW_COLUMNS = ['trades', 'total_volume', 'total_amount', 'average_price', 'vwap', 'open', 'high', 'low', 'close', 'buy_volume', 'sell_volume'];
const TREND_COLUMNS = ['vwap', 'prev_vwap', 'avg_price_6m', 'change_6m_pct', 'windows_6m'];
/** A column of the store (s) that differs from the oracle's (o) beyond 1e-9 relative. */
const differs = (c: string) => `NOT (s.${c} IS NOT DISTINCT FROM o.${c} OR abs(s.${c} - o.${c}) <= 1e-9 * greatest(abs(o.${c}), 1e-300))`;
const shown = (c: string) => `CASE WHEN ${differs(c)} THEN '${c}: ' || coalesce(s.${c}::VARCHAR, 'NULL') || ' vs ' || coalesce(o.${c}::VARCHAR, 'NULL') END`;

/**
 * Where a store differs from the oracle, after runOracle on the same connection: rows of trade_windows
 * (and of price_trends, unless `trends` is false) with a column beyond 1e-9 relative, or on one side
 * only; at most 10 of each, by start. `db` names the store's catalog when it is ATTACHed.
 */
export async function oracleDiffs(conn: DuckDBConnection, o: { db?: string; trends?: boolean } = {}): Promise<{ windows: Record<string, unknown>[]; trends: Record<string, unknown>[] }> {
  const table = (name: string) => (o.db ? `${o.db}.${name}` : name);
  const rows = async (sql: string) => (await conn.runAndReadAll(sql)).getRowObjectsJS();
  const key = 's.asset = o.asset AND epoch_ms(s.window_start) = o.window_start AND epoch_ms(s.window_end) = o.window_end';
  const side = `coalesce(s.asset, o.asset) AS asset, coalesce(epoch_ms(s.window_start), o.window_start)::DOUBLE AS start,
    s.asset IS NULL AS missing_in_store, o.asset IS NULL AS not_in_oracle`;
  const windows = await rows(`
    SELECT ${side}, concat_ws(', ', ${WINDOW_COLUMNS.map(shown).join(', ')}) AS diff
    FROM ${table('trade_windows')} s FULL OUTER JOIN oracle_windows o ON ${key}
    WHERE s.asset IS NULL OR o.asset IS NULL OR ${WINDOW_COLUMNS.map(differs).join(' OR ')}
    ORDER BY start LIMIT 10`);
  const trends =
    o.trends === false
      ? []
      : await rows(`
    SELECT ${side}, s.trend AS store_trend, o.trend AS oracle_trend, concat_ws(', ', ${TREND_COLUMNS.map(shown).join(', ')}) AS diff
    FROM ${table('price_trends')} s FULL OUTER JOIN oracle_trends o ON ${key}
    WHERE s.asset IS NULL OR o.asset IS NULL OR s.trend IS DISTINCT FROM o.trend OR ${TREND_COLUMNS.map(differs).join(' OR ')}
    ORDER BY start LIMIT 10`);
  return { windows, trends };
}
