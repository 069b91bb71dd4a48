import type { Trade } from '../../src/core/trade.js';
import { DEFAULT_ENGINE_CONFIG, type EngineConfig } from '../../src/engine/contract.js';

export const MIN = 60_000;
export const SEC = 1000;

export function trade(timestamp: number, priceUsd: number, volume = 1, over: Partial<Trade> = {}): Trade {
  return { exchange: 'test', base: 'bitcoin', quote: 'united-states-dollar', direction: 'buy', price: priceUsd, volume, timestamp, priceUsd, ...over };
}

export function config(over: Partial<EngineConfig> = {}): EngineConfig {
  return { ...DEFAULT_ENGINE_CONFIG, ...over };
}
