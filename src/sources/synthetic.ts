// A made-up market for trying the pipeline without a network: bitcoin and ethereum on a random walk,
// N trades per second of wall time, stamped with the current time. Unbounded; seeded so runs repeat.
import type { Clock } from '../core/clock.js';
import type { Trade } from '../core/trade.js';
import type { Source, SourceEvent } from './contract.js';
import { seededRandom } from '../core/random.js';

const ASSETS = [
  { base: 'bitcoin', price: 60_000, size: 0.05 },
  { base: 'ethereum', price: 3_000, size: 0.8 },
];
const TICK_MS = 100;


export class SyntheticSource implements Source {
  readonly name: string;
  readonly bounded = false;
  constructor(private readonly tradesPerSecond: number, private readonly clock: Clock, private readonly seed = 42) {
    this.name = `synthetic:${tradesPerSecond}`;
  }

  async *events(signal: AbortSignal): AsyncGenerator<SourceEvent> {
    const rand = seededRandom(this.seed);
    const prices = ASSETS.map((a) => a.price);
    let owed = 0;
    let id = 0;
    while (!signal.aborted) {
      try {
        await this.clock.sleep(TICK_MS, signal);
      } catch {
        return; // aborted: the normal way to stop an unbounded source
      }
      owed += (this.tradesPerSecond * TICK_MS) / 1000;
      const trades: Trade[] = [];
      const now = this.clock.now();
      for (; owed >= 1; owed--) {
        const i = Math.floor(rand() * ASSETS.length);
        prices[i] *= 1 + (rand() - 0.5) * 0.0004;
        const price = Math.round(prices[i] * 100) / 100;
        trades.push({
          exchange: 'synthetic', base: ASSETS[i].base, quote: 'united-states-dollar', direction: rand() < 0.5 ? 'buy' : 'sell',
          price, volume: Math.round(ASSETS[i].size * rand() * 1e6) / 1e6 + 1e-6, timestamp: now - Math.floor(rand() * 50), priceUsd: price,
          tradeId: String(++id), receivedAt: now,
        });
      }
      if (trades.length > 0) yield { kind: 'trades', source: this.name, trades };
    }
  }
}
