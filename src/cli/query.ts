// `coinstream query`: the latest windows and trends in a store (DuckDB, MySQL or PostgreSQL), as a table.
import { parseDuration } from '../core/duration.js';
import { UsageError } from '../core/errors.js';
import { WINDOW_COLUMNS, type WindowRow } from '../sinks/console.js';
import { formatPrice, renderTable } from '../sinks/format.js';
import type { StoreReader } from '../sinks/contract.js';
import { openStoreReader } from '../sinks/read-store.js';

export interface QueryFlags {
  store: string;
  asset?: string;
  last: string;
}

export async function queryCommand(flags: QueryFlags, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  const lastMs = parseDuration(flags.last, '--last');
  // 0 covers no window: "no windows in STORE" would then be said of a store that holds many.
  if (lastMs <= 0) throw new UsageError('--last must be longer than 0, e.g. --last 6m');
  // An empty --asset (a script's unset variable) reads as no asset and said "no windows" of a full store.
  if (flags.asset !== undefined && flags.asset.trim() === '') throw new UsageError('--asset is empty; give an asset id (--asset bitcoin), or leave the flag out for every asset');
  const reader = await openStoreReader(flags.store);
  try {
    const rows: WindowRow[] = (await reader.latestWindows({ asset: flags.asset, lastMs })).map((r) => ({ window: r.window, trend: r.trend }));
    if (rows.length === 0) {
      // A store of nothing but rejections (every line malformed, say) says so rather than look empty.
      const rejected = Object.entries(await reader.rejectedCounts()).map(([reason, n]) => `${reason} ${n}`);
      const held = rejected.length ? `; it holds rejected trades only: ${rejected.join(', ')}` : '';
      out.write(`no windows${flags.asset ? ` for asset "${flags.asset}"` : ''} in ${reader.name}${flags.asset ? await assetsHeld(reader, lastMs) : held}\n`);
      return;
    }
    const columns = [...WINDOW_COLUMNS.slice(0, -1), { header: 'avg_6m', value: (r: WindowRow) => formatPrice(r.trend?.avgPrice6m), right: true }, WINDOW_COLUMNS[WINDOW_COLUMNS.length - 1]];
    out.write(renderTable(columns, rows) + '\n');
    const counts = Object.entries(await reader.rejectedCounts()).map(([reason, n]) => `${reason} ${n}`);
    out.write(`${rows.length} window(s)${counts.length ? `; rejected trades in store: ${counts.join(', ')}` : ''}\n`);
  } finally {
    await reader.close();
  }
}

/** For an --asset with no windows (a typo, a symbol where the id goes): the assets the store does hold lately. */
async function assetsHeld(reader: StoreReader, lastMs: number): Promise<string> {
  const assets = [...new Set((await reader.latestWindows({ lastMs })).map((r) => r.window.asset))].sort();
  return assets.length === 0 ? '' : `; it holds ${assets.join(', ')} (--asset takes the asset's CoinCap id, e.g. bitcoin)`;
}
