// `coinstream query`: the latest windows and trends in a store, as a table.
import { existsSync } from 'node:fs';
import { parseDuration } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import type { TrendResult, WindowResult } from '../engine/contract.js';
import { WINDOW_COLUMNS, type WindowRow } from '../sinks/console.js';
import { withDuckDB } from '../sinks/duckdb/open.js';
import { formatPrice, renderTable } from '../sinks/format.js';

export interface QueryFlags {
  store: string;
  asset?: string;
  last: string;
}

const QUERY = `
WITH newest AS (SELECT max(window_end) AS t FROM trade_windows WHERE $asset IS NULL OR asset = $asset)
SELECT w.asset, epoch_ms(w.window_start) AS window_start, epoch_ms(w.window_end) AS window_end, w.trades,
       w.total_volume, w.total_amount, w.average_price, w.vwap, w.open, w.high, w.low, w.close,
       w.buy_volume, w.sell_volume, w.is_final, epoch_ms(w.updated_at) AS updated_at,
       p.prev_vwap, p.trend, p.avg_price_6m, p.change_6m_pct, p.windows_6m, p.is_final AS trend_final
FROM trade_windows w
LEFT JOIN price_trends p USING (asset, window_start, window_end), newest
WHERE ($asset IS NULL OR w.asset = $asset) AND w.window_end > newest.t - to_milliseconds(CAST($last AS BIGINT))
ORDER BY w.asset, w.window_start, w.window_end`;

export async function queryCommand(flags: QueryFlags, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const lastMs = parseDuration(flags.last, '--last');
  if (!flags.store.startsWith('duckdb:')) throw new UsageError(`--store "${flags.store}": query reads a DuckDB store for now, e.g. --store duckdb:./coinstream.duckdb`);
  const path = flags.store.slice('duckdb:'.length);
  if (!existsSync(path)) throw new UsageError(`no store at ${path}; run \`coinstream run\` first, or point --store at one`);
  await withDuckDB(path, async (conn) => {
    const reader = await conn.runAndReadAll(QUERY, { asset: flags.asset ?? null, last: lastMs });
    const rows: WindowRow[] = reader.getRowObjectsJS().map((r) => {
      const n = (k: string) => Number(r[k]);
      const window: WindowResult = {
        asset: String(r.asset), windowStart: n('window_start'), windowEnd: n('window_end'), trades: n('trades'),
        totalVolume: n('total_volume'), totalAmount: n('total_amount'), averagePrice: n('average_price'), vwap: n('vwap'),
        open: n('open'), high: n('high'), low: n('low'), close: n('close'), buyVolume: n('buy_volume'), sellVolume: n('sell_volume'),
        isFinal: Boolean(r.is_final), updatedAt: n('updated_at'),
      };
      const trend: TrendResult | undefined = r.trend_final === null || r.trend_final === undefined ? undefined : {
        asset: window.asset, windowStart: window.windowStart, windowEnd: window.windowEnd, vwap: window.vwap,
        prevVwap: r.prev_vwap === null ? null : n('prev_vwap'), trend: (r.trend as TrendResult['trend']) ?? null,
        avgPrice6m: n('avg_price_6m'), change6mPct: n('change_6m_pct'), windows6m: n('windows_6m'), isFinal: Boolean(r.trend_final),
      };
      return { window, trend };
    });
    if (rows.length === 0) {
      out.write(`no windows${flags.asset ? ` for asset "${flags.asset}"` : ''} in ${path}\n`);
      return;
    }
    const columns = [...WINDOW_COLUMNS.slice(0, -1), { header: 'avg_6m', value: (r: WindowRow) => formatPrice(r.trend?.avgPrice6m), right: true }, WINDOW_COLUMNS[WINDOW_COLUMNS.length - 1]];
    out.write(renderTable(columns, rows) + '\n');
    const rejected = await conn.runAndReadAll('SELECT reason, count(*) AS n FROM rejected_trades GROUP BY reason ORDER BY reason');
    const counts = rejected.getRowObjectsJS().map((r) => `${r.reason} ${r.n}`);
    out.write(`${rows.length} window(s)${counts.length ? `; rejected trades in store: ${counts.join(', ')}` : ''}\n`);
  }, { readOnly: true });
}
