// One asset's card: name, trend badge, last price, trades per second, the candlestick chart (with VWAP
// line and buy/sell-coloured volume) and a table of the newest windows.
import {
  CandlestickSeries,
  ColorType,
  createChart,
  CrosshairMode,
  HistogramSeries,
  LineSeries,
  type CandlestickData,
  type HistogramData,
  type IChartApi,
  type ISeriesApi,
  type LineData,
  type UTCTimestamp,
  type WhitespaceData,
} from 'lightweight-charts';
import type { WindowResult } from '../contract.js';
import { el, setText } from './dom.js';
import { fmtClock, fmtDateTime, fmtFixed, fmtInt, fmtPct, fmtPrice, fmtRate, fmtSpan, fmtUsd, fmtVolume, priceDecimals } from './format.js';
import { isFiniteNumber, type AssetModel } from './model.js';

/** Rows in the windows table. */
export const TABLE_ROWS = 12;
/** Windows in view when the chart first gets data. */
const VISIBLE_BARS = 120;
/** Widest bar (px) when there are few windows. */
const MAX_BAR_SPACING = 28;

const UP = '#26a69a';
const DOWN = '#ef5350';
const UP_VOL = 'rgba(38, 166, 154, 0.5)';
const DOWN_VOL = 'rgba(239, 83, 80, 0.5)';
const VWAP = '#f5b942';

const TREND_ARROWS: Record<string, string> = { up: '\u25b2', down: '\u25bc', flat: '\u25a0' };

/** The run's --trend-span, as the status says it: each trend's change is labelled with it ("6m" was written in). */
let trendSpanText = 'over the trend span';
export function setTrendSpan(ms: number | null): boolean {
  const text = ms !== null && ms > 0 ? fmtSpan(ms) : 'over the trend span';
  const changed = text !== trendSpanText;
  trendSpanText = text;
  return changed;
}

interface Series {
  candles: ISeriesApi<'Candlestick'>;
  vwap: ISeriesApi<'Line'>;
  volume: ISeriesApi<'Histogram'>;
}

function toTime(ms: number): UTCTimestamp {
  return Math.floor(ms / 1000) as UTCTimestamp;
}

function candle(w: WindowResult): CandlestickData<UTCTimestamp> | WhitespaceData<UTCTimestamp> {
  const time = toTime(w.windowStart);
  if (![w.open, w.high, w.low, w.close].every(isFiniteNumber)) return { time };
  return { time, open: w.open, high: w.high, low: w.low, close: w.close };
}

function vwapPoint(w: WindowResult): LineData<UTCTimestamp> | WhitespaceData<UTCTimestamp> {
  const time = toTime(w.windowStart);
  return isFiniteNumber(w.vwap) ? { time, value: w.vwap } : { time };
}

function volumeBar(w: WindowResult): HistogramData<UTCTimestamp> | WhitespaceData<UTCTimestamp> {
  const time = toTime(w.windowStart);
  if (!isFiniteNumber(w.totalVolume)) return { time };
  const buy = isFiniteNumber(w.buyVolume) ? w.buyVolume : 0;
  const sell = isFiniteNumber(w.sellVolume) ? w.sellVolume : 0;
  return { time, value: w.totalVolume, color: buy >= sell ? UP_VOL : DOWN_VOL };
}

export class AssetCard {
  readonly root: HTMLElement;
  private readonly trendBadge: HTMLElement;
  private readonly price: HTMLElement;
  private readonly rate: HTMLElement;
  private readonly chartBox: HTMLElement;
  private readonly tbody: HTMLTableSectionElement;
  private chart: IChartApi | null = null;
  private series: Series | null = null;
  /** Chart times (s) now plotted, and the newest. */
  private plotted = new Set<number>();
  private lastTime = -Infinity;
  private decimals = -1;
  private framed = false;

  constructor(readonly model: AssetModel) {
    this.trendBadge = el('span', { class: 'trend', testid: 'trend-badge', text: 'no trend yet' });
    this.trendBadge.dataset.trend = 'none';
    this.price = el('span', { class: 'price', testid: 'last-price', text: '\u2013' });
    this.rate = el('span', { class: 'rate', testid: 'trades-per-second', text: '\u2013' });
    this.chartBox = el('div', { class: 'chart', testid: 'chart' });
    this.tbody = el('tbody');

    const head = el('header', { class: 'card-head' }, [
      el('h2', { class: 'asset-name', testid: 'asset-name', text: model.asset, title: model.asset }),
      this.trendBadge,
      el('span', { class: 'quote' }, [this.price, el('span', { class: 'rate-wrap' }, [this.rate, document.createTextNode(' trades/s')])]),
    ]);
    const legend = el('div', { class: 'legend', attrs: { 'aria-hidden': 'true' } }, [
      el('span', { class: 'key key-vwap', text: 'VWAP' }),
      el('span', { class: 'key key-buy', text: 'volume, buys \u2265 sells' }),
      el('span', { class: 'key key-sell', text: 'volume, sells > buys' }),
    ]);
    const headRow = el('tr', {}, ['start', 'end', 'trades', 'vwap', 'open', 'high', 'low', 'close', 'volume', 'final'].map((h) => el('th', { text: h, attrs: { scope: 'col' } })));
    const table = el('table', { class: 'windows', testid: 'windows-table' }, [
      el('caption', { text: `Latest windows (UTC)` }),
      el('thead', {}, [headRow]),
      this.tbody,
    ]);
    this.root = el('section', { class: 'card' }, [head, this.chartBox, legend, el('div', { class: 'table-wrap' }, [table])]);
    this.root.dataset.asset = model.asset;
    this.root.setAttribute('aria-label', model.asset);
  }

  /** Creates the chart if it is not there yet (charts exist only for cards that have been shown). */
  ensureChart(): void {
    if (this.chart) return;
    const chart = createChart(this.chartBox, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: 'transparent' },
        textColor: '#9aa3b5',
        fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
        // The library's logo injects an inline <style>, which the dashboard's CSP refuses; the page
        // credits TradingView in its footer instead (as the library's license asks).
        attributionLogo: false,
      },
      grid: { vertLines: { color: 'rgba(120, 130, 150, 0.12)' }, horzLines: { color: 'rgba(120, 130, 150, 0.12)' } },
      rightPriceScale: { borderVisible: false, scaleMargins: { top: 0.08, bottom: 0.26 } },
      timeScale: { borderVisible: false, timeVisible: true, secondsVisible: false },
      crosshair: { mode: CrosshairMode.Normal },
    });
    const candles = chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderUpColor: UP,
      borderDownColor: DOWN,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    const vwap = chart.addSeries(LineSeries, {
      color: VWAP,
      lineWidth: 2,
      priceLineVisible: false,
      lastValueVisible: false,
      crosshairMarkerVisible: false,
    });
    const volume = chart.addSeries(HistogramSeries, {
      priceScaleId: 'volume',
      priceFormat: { type: 'volume' },
      priceLineVisible: false,
      lastValueVisible: false,
    });
    chart.priceScale('volume').applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.chart = chart;
    this.series = { candles, vwap, volume };
    // The chart takes its size from the page asynchronously (autoSize): frame the data once it has one.
    chart.timeScale().subscribeSizeChange(() => this.frame());
    this.plotAll();
  }

  /** Everything from the model: texts, table, whole chart. */
  renderAll(): void {
    this.renderQuote();
    this.renderTable();
    if (this.chart) this.plotAll();
  }

  /** After a live update: texts, table, and the chart's changed windows only. */
  renderUpdate(changed: readonly WindowResult[]): void {
    this.renderQuote();
    if (changed.length === 0) return;
    this.renderTable();
    if (this.series) this.plotChanged(changed);
  }

  destroy(): void {
    this.chart?.remove();
    this.chart = null;
    this.series = null;
    this.framed = false;
    this.root.remove();
  }

  private renderQuote(): void {
    const m = this.model;
    const t = m.trend;
    const dir = t?.trend ?? 'none';
    if (this.trendBadge.dataset.trend !== dir) this.trendBadge.dataset.trend = dir;
    if (t) {
      const arrow = TREND_ARROWS[dir] ?? '\u2013';
      setText(this.trendBadge, `${arrow} ${t.trend ?? 'no trend'} \u00b7 ${fmtPct(t.change6mPct)} ${trendSpanText}`);
      this.trendBadge.title =
        `window ${fmtDateTime(t.windowStart)}: VWAP ${fmtPrice(t.vwap)}, previous ${fmtPrice(t.prevVwap)}, ` +
        `average over the span ${fmtPrice(t.avgPrice6m)} (${fmtInt(t.windows6m)} windows)`;
    } else {
      setText(this.trendBadge, 'no trend yet');
    }
    if (m.price) {
      setText(this.price, fmtUsd(m.price.priceUsd));
      this.price.title = `last trade received ${fmtDateTime(m.price.receivedAt)}`;
    } else {
      const last = m.sorted().at(-1);
      setText(this.price, last ? fmtUsd(last.close) : '\u2013');
    }
    setText(this.rate, fmtRate(m.tradesPerSecond));
  }

  private renderTable(): void {
    const latest = this.model.latest(TABLE_ROWS);
    const ref = latest.find((w) => isFiniteNumber(w.close))?.close;
    const d = ref === undefined ? 2 : priceDecimals(ref);
    const px = (v: number) => fmtFixed(v, d);
    const rows = latest.map((w) => {
      const tr = el('tr', { class: w.isFinal ? 'final' : 'open' }, [
        el('td', { text: fmtClock(w.windowStart), title: fmtDateTime(w.windowStart) }),
        el('td', { text: fmtClock(w.windowEnd), title: fmtDateTime(w.windowEnd) }),
        el('td', { class: 'num', text: fmtInt(w.trades) }),
        el('td', { class: 'num', text: px(w.vwap) }),
        el('td', { class: 'num', text: px(w.open) }),
        el('td', { class: 'num', text: px(w.high) }),
        el('td', { class: 'num', text: px(w.low) }),
        el('td', { class: 'num', text: px(w.close) }),
        el('td', { class: 'num', text: fmtVolume(w.totalVolume), title: `buy ${fmtVolume(w.buyVolume)}, sell ${fmtVolume(w.sellVolume)}` }),
        el('td', { class: 'flag', text: w.isFinal ? 'yes' : 'no' }),
      ]);
      tr.dataset.windowStart = String(w.windowStart);
      return tr;
    });
    this.tbody.replaceChildren(...rows);
  }

  private applyPriceFormat(): void {
    const last = this.model.sorted().at(-1);
    if (!this.series || !last || !isFiniteNumber(last.close)) return;
    const d = priceDecimals(last.close);
    if (d === this.decimals) return;
    this.decimals = d;
    this.series.candles.applyOptions({ priceFormat: { type: 'price', precision: d, minMove: 10 ** -d } });
    this.series.vwap.applyOptions({ priceFormat: { type: 'price', precision: d, minMove: 10 ** -d } });
  }

  private plotAll(): void {
    const s = this.series;
    if (!s) return;
    const all = this.model.sorted();
    // Two windows in the same second (sub-second slides) would be one chart point: keep the later.
    const byTime = new Map<number, WindowResult>();
    for (const w of all) byTime.set(toTime(w.windowStart), w);
    const ws = [...byTime.values()];
    s.candles.setData(ws.map(candle));
    s.vwap.setData(ws.map(vwapPoint));
    s.volume.setData(ws.map(volumeBar));
    this.plotted = new Set(byTime.keys());
    this.lastTime = ws.length ? toTime(ws[ws.length - 1].windowStart) : -Infinity;
    this.applyPriceFormat();
    this.frame();
  }

  /**
   * Once there is data and the chart has its width: show the newest VISIBLE_BARS windows (all when
   * fewer). From then on the time scale follows new bars by itself, and what the user scrolled to stays.
   */
  private frame(): void {
    const ts = this.chart?.timeScale();
    const n = this.plotted.size;
    if (this.framed || !ts || n === 0 || ts.width() <= 0) return;
    this.framed = true;
    // Bars as wide as fills the width (capped: a handful of windows would each take a fifth of it).
    const spacing = Math.max(2, Math.min(MAX_BAR_SPACING, ts.width() / (Math.min(n, VISIBLE_BARS) + 1.5)));
    ts.applyOptions({ barSpacing: spacing, rightOffset: 1 });
    ts.scrollToRealTime();
  }

  private plotChanged(changed: readonly WindowResult[]): void {
    const s = this.series;
    if (!s) return;
    for (const w of changed) {
      const t = toTime(w.windowStart);
      if (!this.plotted.has(t) && t < this.lastTime) {
        // A window older than the newest one that the chart has never had: series.update cannot insert it.
        this.plotAll();
        return;
      }
    }
    try {
      for (const w of changed) {
        const t = toTime(w.windowStart);
        const historical = t < this.lastTime;
        s.candles.update(candle(w), historical);
        s.vwap.update(vwapPoint(w), historical);
        s.volume.update(volumeBar(w), historical);
        this.plotted.add(t);
        if (t > this.lastTime) this.lastTime = t;
      }
    } catch (err) {
      console.warn(`coinstream: chart update for ${this.model.asset} failed, redrawing:`, err);
      this.plotAll();
      return;
    }
    this.applyPriceFormat();
  }
}
