// A recorder for record.test.ts to SIGKILL: records `coincap@URL` to OUT with debug logs (JSON lines)
// on stderr, so the test can wait for 'recording flushed'. Usage: node --import tsx record-child.ts URL OUT FLUSH_MS
import { pino } from 'pino';
import { systemClock } from '../../src/core/clock.js';
import { recordSources } from '../../src/sources/feeds/recorder.js';
import { parseSourceSpecs } from '../../src/sources/spec.js';

const [url, out, flushMs] = process.argv.slice(2);
const logger = pino({ level: 'debug' }, pino.destination({ fd: 2, sync: true }));
const [source] = await parseSourceSpecs([`coincap@${url}`], { clock: systemClock, logger });
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
await recordSources([source], { out, rotateBytes: 1 << 30, signal: stop.signal, logger, flushEveryMs: Number(flushMs) });
