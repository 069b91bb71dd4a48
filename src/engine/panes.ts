// A pane is the smallest slice of event time that windows are built from: its size is
// gcd(window, slide), so every window is a whole number of consecutive panes. A trade updates
// exactly one pane; a window's aggregates are the combination of its panes. This keeps the per-trade
// cost constant however many windows overlap (a 1m window sliding by 1s would otherwise mean 60
// updates per trade).

export interface Pane {
  readonly start: number;
  trades: number;
  volume: number;
  /** Sum of volume * priceUsd. */
  amount: number;
  /** Sum of priceUsd, for the plain average. */
  sumPrice: number;
  high: number;
  low: number;
  buyVolume: number;
  sellVolume: number;
  /** Earliest trade by event time; ties go to the first to arrive (lowest arrival sequence). */
  openTime: number;
  openSeq: number;
  openPrice: number;
  /** Latest trade by event time; ties go to the last to arrive. */
  closeTime: number;
  closeSeq: number;
  closePrice: number;
  /** Changed since the last trigger collected it. */
  dirty: boolean;
}

export function newPane(start: number): Pane {
  return {
    start,
    trades: 0,
    volume: 0,
    amount: 0,
    sumPrice: 0,
    high: -Infinity,
    low: Infinity,
    buyVolume: 0,
    sellVolume: 0,
    openTime: Infinity,
    openSeq: 0,
    openPrice: 0,
    closeTime: -Infinity,
    closeSeq: 0,
    closePrice: 0,
    dirty: false,
  };
}

export function addToPane(pane: Pane, time: number, seq: number, priceUsd: number, volume: number, isBuy: boolean): void {
  pane.trades++;
  pane.volume += volume;
  pane.amount += volume * priceUsd;
  pane.sumPrice += priceUsd;
  if (priceUsd > pane.high) pane.high = priceUsd;
  if (priceUsd < pane.low) pane.low = priceUsd;
  if (isBuy) pane.buyVolume += volume;
  else pane.sellVolume += volume;
  // Arrival sequence only grows, so for the open a tie keeps the incumbent and for the close a tie
  // takes the newcomer.
  if (time < pane.openTime) {
    pane.openTime = time;
    pane.openSeq = seq;
    pane.openPrice = priceUsd;
  }
  if (time >= pane.closeTime) {
    pane.closeTime = time;
    pane.closeSeq = seq;
    pane.closePrice = priceUsd;
  }
}

/** Empties a pane for reuse as an accumulator (see addPane). */
export function clearPane(out: Pane): void {
  out.trades = 0;
  out.volume = 0;
  out.amount = 0;
  out.sumPrice = 0;
  out.high = -Infinity;
  out.low = Infinity;
  out.buyVolume = 0;
  out.sellVolume = 0;
  out.openTime = Infinity;
  out.openSeq = 0;
  out.openPrice = 0;
  out.closeTime = -Infinity;
  out.closeSeq = 0;
  out.closePrice = 0;
}

/** Adds pane p into `out`: panes combine in any order into the same aggregate. */
export function addPane(out: Pane, p: Pane): void {
  if (p.trades === 0) return;
  out.trades += p.trades;
  out.volume += p.volume;
  out.amount += p.amount;
  out.sumPrice += p.sumPrice;
  if (p.high > out.high) out.high = p.high;
  if (p.low < out.low) out.low = p.low;
  out.buyVolume += p.buyVolume;
  out.sellVolume += p.sellVolume;
  if (p.openTime < out.openTime || (p.openTime === out.openTime && p.openSeq < out.openSeq)) {
    out.openTime = p.openTime;
    out.openSeq = p.openSeq;
    out.openPrice = p.openPrice;
  }
  if (p.closeTime > out.closeTime || (p.closeTime === out.closeTime && p.closeSeq > out.closeSeq)) {
    out.closeTime = p.closeTime;
    out.closeSeq = p.closeSeq;
    out.closePrice = p.closePrice;
  }
}

export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return Math.abs(a);
}
