// Prometheus metrics (GET /metrics), names prefixed `coinstream_`. A PipelineObserver fills them from
// the run: trades in, rejections by reason, gaps, reconnects, how long a trigger's write takes, how
// long a trade waits from arrival to a committed store, each sink's write time; `process` sets the
// consumer lag per partition. One registry per process (not prom-client's global one), so that tests
// can run several.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PipelineObserver } from '../pipeline/pipeline.js';
import type { OutputBatch } from '../sinks/contract.js';
import type { SourceEvent } from '../sources/contract.js';

/** rejected_trades' reasons (DESIGN.md). */
const REJECT_REASONS = ['malformed', 'invalid', 'late', 'duplicate'] as const;

/** Trades per batch whose latency is observed (evenly spread): a million observations a second cost more than they tell. */
const LATENCY_SAMPLES_PER_BATCH = 64;

export class Metrics {
  readonly registry = new Registry();
  private readonly tradesIn = new Counter({ name: 'coinstream_trades_in_total', help: 'Trades received from the sources (before validation by the engine: late ones included)', labelNames: ['source'], registers: [this.registry] });
  private readonly rejected = new Counter({ name: 'coinstream_rejected_total', help: 'Input kept in rejected_trades, by reason', labelNames: ['reason'], registers: [this.registry] });
  private readonly gaps = new Counter({ name: 'coinstream_gaps_total', help: 'Gaps in trade ids: trades an exchange sent that never reached us', labelNames: ['source'], registers: [this.registry] });
  private readonly reconnects = new Counter({ name: 'coinstream_reconnects_total', help: 'Live feed connections lost (each is retried with backoff)', labelNames: ['source'], registers: [this.registry] });
  private readonly batches = new Counter({ name: 'coinstream_batches_total', help: 'Batches written to every sink', registers: [this.registry] });
  private readonly triggerSeconds = new Histogram({ name: 'coinstream_trigger_duration_seconds', help: 'Time to write one batch to every sink', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] });
  private readonly latencySeconds = new Histogram({
    name: 'coinstream_trade_to_store_seconds',
    help: 'From a trade\'s arrival to the commit of the batch holding it, per sink (sampled: 64 trades per batch)',
    labelNames: ['sink'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly sinkSeconds = new Histogram({ name: 'coinstream_sink_write_seconds', help: 'One sink\'s write of one batch', labelNames: ['sink'], buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [this.registry] });
  private readonly lag = new Gauge({ name: 'coinstream_consumer_lag', help: 'process: records in a partition not yet processed', labelNames: ['partition'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'coinstream_' });
    // Every series from the start, at 0: a labelled counter has no sample until its first event, and
    // rate() or an alert on it sees nothing rather than nothing happening.
    for (const reason of REJECT_REASONS) this.rejected.inc({ reason }, 0);
  }

  /** The observer to give the pipeline(s). */
  readonly observer: PipelineObserver = {
    event: (e: SourceEvent) => {
      if (e.kind === 'trades') this.tradesIn.inc({ source: e.source }, e.trades.length);
      else if (e.kind === 'connected') {
        // A feed's series, at 0 from its first connection (see the constructor).
        this.gaps.inc({ source: e.source }, 0);
        this.reconnects.inc({ source: e.source }, 0);
      }
      else if (e.kind === 'gap') this.gaps.inc({ source: e.source });
      else if (e.kind === 'disconnected') this.reconnects.inc({ source: e.source });
    },
    written: (batch: OutputBatch, writeMs: number) => {
      this.batches.inc();
      this.triggerSeconds.observe(writeMs / 1000);
      for (const r of batch.rejected) this.rejected.inc({ reason: r.reason });
    },
    sinkWritten: (sink: string, ms: number, batch: OutputBatch, at: number) => {
      this.sinkSeconds.observe({ sink }, ms / 1000);
      const t = batch.trades;
      const step = Math.max(1, Math.floor(t.length / LATENCY_SAMPLES_PER_BATCH));
      const latency = this.latencySeconds.labels({ sink });
      for (let i = 0; i < t.length; i += step) {
        const received = t.receivedAt[i];
        if (!Number.isNaN(received)) latency.observe(Math.max(0, at - received) / 1000);
      }
    },
  };

  consumerLag(partition: string, records: number): void {
    this.lag.set({ partition }, records);
  }

  /** The Prometheus text, as GET /metrics serves it. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
