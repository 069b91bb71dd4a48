// The trade scanner of src/core/scan-trade.ts, line for line in C, compiled to WebAssembly
// (scripts/build-wasm.sh; the .wasm beside this file is what runs, and a test checks it is built from
// this source). A replay's pieces of lines are scanned here: the same verdicts and the same values as
// the JavaScript scanner, at a fraction of its cost per line, with the results in arrays that the
// JavaScript side copies a column at a time (src/core/wasm-scanner.ts).
//
// Like the JavaScript scanner it is a fast path, never a second opinion: a line is read here only when
// it is a trade message this code can read exactly and that passes every check of validateTrade; for
// any other line the status is 0 and the caller takes the general path (parseTrade) for its verdict.
// Numbers: at most 15 significant digits and a decimal exponent within +-22, so that the value is one
// correctly rounded multiply or divide of exact doubles, the double JSON.parse gives.
//
// Freestanding: no libc. Memory: the static arrays below, then the input from __heap_base, grown by
// the caller to fit each piece.

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define EXPORT(name) __attribute__((export_name(#name)))

/** Lines per scan() call: the caller calls again from where a call stopped. */
#define MAX_LINES 8192
/** Distinct strings (exchanges, assets, quotes) and keys kept: beyond, lines go to the general path. */
#define MAX_STRINGS 4096
#define STRING_HASH_SLOTS 8192
#define ARENA_BYTES (1 << 20)
#define MAX_KEYS 16384
#define KEY_HASH_SLOTS 32768
#define NONE 0xffffffffu

// The fields of the trade message, one bit each (the same bits as scan-trade.ts).
#define F_EXCHANGE 1u
#define F_BASE 2u
#define F_QUOTE 4u
#define F_DIRECTION 8u
#define F_PRICE 16u
#define F_VOLUME 32u
#define F_TIMESTAMP 64u
#define F_PRICE_USD 128u
#define F_TRADE_ID 256u
#define F_RECEIVED_AT 512u
#define REQUIRED (F_EXCHANGE | F_BASE | F_QUOTE | F_DIRECTION | F_PRICE | F_VOLUME | F_TIMESTAMP | F_PRICE_USD)

extern u8 __heap_base;

// validateTrade's limits, given by the caller (parse-trade.ts holds them).
static double min_magnitude, max_magnitude, earliest_trade_ms, max_clock_ahead_ms;
static u32 max_id_chars;

// Per line of the last scan() call.
static u32 line_end[MAX_LINES];
static u8 line_status[MAX_LINES];
// Per trade read by the last scan() call, in line order.
static double out_price[MAX_LINES], out_volume[MAX_LINES], out_timestamp[MAX_LINES], out_price_usd[MAX_LINES], out_received_at[MAX_LINES];
static u32 out_key[MAX_LINES], out_trade_id_start[MAX_LINES], out_trade_id_length[MAX_LINES];
static u32 trades_read;

// Interned strings: bytes in the arena, found by hash.
static u8 arena[ARENA_BYTES];
static u32 arena_used;
static u32 string_start[MAX_STRINGS], string_length[MAX_STRINGS];
static u32 string_count;
static u32 string_slot[STRING_HASH_SLOTS]; // id + 1; 0: empty

// Keys: (exchange, base, quote, direction) by string ids, found by hash.
static u32 key_exchange[MAX_KEYS], key_base[MAX_KEYS], key_quote[MAX_KEYS];
static u8 key_sell[MAX_KEYS];
static u32 key_count;
static u32 key_slot[KEY_HASH_SLOTS]; // id + 1; 0: empty

/** The ids last returned per field (exchange, base, quote): a stream repeats a few, in runs or cycles. */
#define RECENT 8
static u32 recent_string[3][RECENT];
static u32 recent_string_count[3];
static u32 recent_string_next[3];
static u32 recent_key[RECENT];
static u32 recent_key_count;
static u32 recent_key_next;

static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

EXPORT(init) void init(double min_mag, double max_mag, double earliest_ms, double clock_ahead_ms, u32 max_id) {
  min_magnitude = min_mag;
  max_magnitude = max_mag;
  earliest_trade_ms = earliest_ms;
  max_clock_ahead_ms = clock_ahead_ms;
  max_id_chars = max_id;
}

EXPORT(input_base) u8 *input_base(void) { return &__heap_base; }
EXPORT(line_ends) u32 *line_ends(void) { return line_end; }
EXPORT(line_statuses) u8 *line_statuses(void) { return line_status; }
EXPORT(prices) double *prices(void) { return out_price; }
EXPORT(volumes) double *volumes(void) { return out_volume; }
EXPORT(timestamps) double *timestamps(void) { return out_timestamp; }
EXPORT(prices_usd) double *prices_usd(void) { return out_price_usd; }
EXPORT(received_ats) double *received_ats(void) { return out_received_at; }
EXPORT(keys) u32 *keys(void) { return out_key; }
EXPORT(trade_id_starts) u32 *trade_id_starts(void) { return out_trade_id_start; }
EXPORT(trade_id_lengths) u32 *trade_id_lengths(void) { return out_trade_id_length; }
EXPORT(trades) u32 trades(void) { return trades_read; }
EXPORT(key_count_) u32 key_count_(void) { return key_count; }
EXPORT(key_exchanges) u32 *key_exchanges(void) { return key_exchange; }
EXPORT(key_bases) u32 *key_bases(void) { return key_base; }
EXPORT(key_quotes) u32 *key_quotes(void) { return key_quote; }
EXPORT(key_sells) u8 *key_sells(void) { return key_sell; }
EXPORT(string_starts) u32 *string_starts(void) { return string_start; }
EXPORT(string_lengths) u32 *string_lengths(void) { return string_length; }
EXPORT(arena_base) u8 *arena_base(void) { return arena; }

static u32 load32(const u8 *p) {
  u32 v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

/** Whether bytes a[0, n) and b[0, n) are equal, four at a time. */
static int same_words(const u8 *a, const u8 *b, u32 n) {
  u32 i = 0;
  for (; i + 4 <= n; i += 4)
    if (load32(a + i) != load32(b + i)) return 0;
  for (; i < n; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/** Makes string `id` the newest recent one of field f (0 exchange, 1 base, 2 quote); see match_recent. */
static void remember_recent(u32 f, u32 id) {
  recent_string[f][recent_string_next[f]] = id;
  recent_string_next[f] = (recent_string_next[f] + 1) % RECENT;
  if (recent_string_count[f] < RECENT) recent_string_count[f]++;
}

/** The id of the string on bytes s[0, n), added if new; NONE when the table is full. */
static u32 intern(const u8 *s, u32 n) {
  u32 h = 2166136261u;
  for (u32 i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  for (u32 slot = h & (STRING_HASH_SLOTS - 1);; slot = (slot + 1) & (STRING_HASH_SLOTS - 1)) {
    u32 entry = string_slot[slot];
    if (entry == 0) break;
    u32 id = entry - 1;
    if (string_length[id] == n && same_words(arena + string_start[id], s, n)) return id;
  }
  if (string_count == MAX_STRINGS || arena_used + n > ARENA_BYTES) return NONE;
  u32 id = string_count++;
  for (u32 i = 0; i < n; i++) arena[arena_used + i] = s[i];
  string_start[id] = arena_used;
  string_length[id] = n;
  arena_used += n;
  u32 slot = h & (STRING_HASH_SLOTS - 1);
  while (string_slot[slot] != 0) slot = (slot + 1) & (STRING_HASH_SLOTS - 1);
  string_slot[slot] = id + 1;
  return id;
}

static u32 key_of(u32 exchange, u32 base, u32 quote, u8 sell);

/** key_of, the recent keys tried first. */
static u32 recent_key_of(u32 exchange, u32 base, u32 quote, u8 sell) {
  for (u32 j = 0; j < recent_key_count; j++) {
    u32 id = recent_key[j];
    if (key_base[id] == base && key_sell[id] == sell && key_exchange[id] == exchange && key_quote[id] == quote) return id;
  }
  u32 id = key_of(exchange, base, quote, sell);
  if (id != NONE) {
    recent_key[recent_key_next] = id;
    recent_key_next = (recent_key_next + 1) % RECENT;
    if (recent_key_count < RECENT) recent_key_count++;
  }
  return id;
}

/** The key of (exchange, base, quote, direction), added if new; NONE when the table is full. */
static u32 key_of(u32 exchange, u32 base, u32 quote, u8 sell) {
  u32 h = ((exchange * 31u + base) * 31u + quote) * 2u + sell;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  for (u32 slot = h & (KEY_HASH_SLOTS - 1);; slot = (slot + 1) & (KEY_HASH_SLOTS - 1)) {
    u32 entry = key_slot[slot];
    if (entry == 0) break;
    u32 id = entry - 1;
    if (key_base[id] == base && key_sell[id] == sell && key_exchange[id] == exchange && key_quote[id] == quote) return id;
  }
  if (key_count == MAX_KEYS) return NONE;
  u32 id = key_count++;
  key_exchange[id] = exchange;
  key_base[id] = base;
  key_quote[id] = quote;
  key_sell[id] = sell;
  u32 slot = h & (KEY_HASH_SLOTS - 1);
  while (key_slot[slot] != 0) slot = (slot + 1) & (KEY_HASH_SLOTS - 1);
  key_slot[slot] = id + 1;
  return id;
}

/** The index after whitespace from p: space, tab, CR, but not LF (as skipSpace in scan-trade.ts). */
static u32 skip_space(const u8 *b, u32 p, u32 end) {
  while (p < end) {
    u8 c = b[p];
    if (c != 0x20 && c != 0x09 && c != 0x0d) break;
    p++;
  }
  return p;
}

/** With b[p] an opening quote: the index of its closing quote for printable ASCII without escapes; else NONE. */
static u32 plain_string_end(const u8 *b, u32 p, u32 end) {
  if (p >= end || b[p] != '"') return NONE;
  for (p++; p < end; p++) {
    u8 c = b[p];
    if (c == '"') return p;
    if (c < 0x20 || c >= 0x80 || c == '\\') return NONE;
  }
  return NONE;
}

static int is_key(const u8 *s, u32 n, const char *key, u32 key_length) {
  return n == key_length && same_words(s, (const u8 *)key, n);
}

/** The field bit of the key on bytes s[0, n), or 0 for a key not in the message. */
static u32 key_bit(const u8 *s, u32 n) {
  switch (n) {
    case 4:
      return is_key(s, n, "base", 4) ? F_BASE : 0;
    case 5:
      return s[0] == 'p' ? (is_key(s, n, "price", 5) ? F_PRICE : 0) : is_key(s, n, "quote", 5) ? F_QUOTE : 0;
    case 6:
      return is_key(s, n, "volume", 6) ? F_VOLUME : 0;
    case 7:
      return is_key(s, n, "tradeId", 7) ? F_TRADE_ID : 0;
    case 8:
      return s[0] == 'e' ? (is_key(s, n, "exchange", 8) ? F_EXCHANGE : 0) : is_key(s, n, "priceUsd", 8) ? F_PRICE_USD : 0;
    case 9:
      return s[0] == 'd' ? (is_key(s, n, "direction", 9) ? F_DIRECTION : 0) : is_key(s, n, "timestamp", 9) ? F_TIMESTAMP : 0;
    case 10:
      return is_key(s, n, "receivedAt", 10) ? F_RECEIVED_AT : 0;
    default:
      return 0;
  }
}

/**
 * A JSON number from p when the fast path reads it exactly (scanNumber in scan-trade.ts, step for
 * step): the index after it, the value in *out; NONE otherwise.
 */
static u32 scan_number(const u8 *b, u32 p, u32 end, double *out) {
  int negative = 0;
  if (p < end && b[p] == '-') {
    negative = 1;
    p++;
  }
  if (p >= end) return NONE;
  u8 c = b[p];
  u64 mantissa = 0;
  int digits = 0;
  int exponent = 0;
  if (c == '0') {
    p++;
  } else if (c >= '1' && c <= '9') {
    while (p < end && (c = b[p]) >= '0' && c <= '9') {
      if (++digits > 15) return NONE;
      mantissa = mantissa * 10 + (u64)(c - '0');
      p++;
    }
  } else {
    return NONE;
  }
  if (p < end && b[p] == '.') {
    p++;
    u32 fraction_start = p;
    while (p < end && (c = b[p]) >= '0' && c <= '9') {
      // Leading zeros of a fraction are not significant digits.
      if ((mantissa != 0 || c != '0') && ++digits > 15) return NONE;
      mantissa = mantissa * 10 + (u64)(c - '0');
      exponent--;
      p++;
    }
    if (p == fraction_start) return NONE; // "1." is not JSON
  }
  if (p < end && (b[p] | 0x20) == 'e') {
    p++;
    int exponent_negative = 0;
    if (p < end && (b[p] == '+' || b[p] == '-')) {
      exponent_negative = b[p] == '-';
      p++;
    }
    u32 exponent_start = p;
    int e = 0;
    while (p < end && (c = b[p]) >= '0' && c <= '9') {
      if (p - exponent_start >= 4) return NONE;
      e = e * 10 + (c - '0');
      p++;
    }
    if (p == exponent_start) return NONE; // "1e" is not JSON
    exponent += exponent_negative ? -e : e;
  }
  double value;
  if (mantissa == 0) value = 0;
  else if (exponent >= 0 && exponent <= 22) value = (double)mantissa * POW10[exponent];
  else if (exponent < 0 && exponent >= -22) value = (double)mantissa / POW10[-exponent];
  else return NONE;
  *out = negative ? -value : value;
  return p;
}

static int is_safe_integer(double x) {
  return x >= -9007199254740991.0 && x <= 9007199254740991.0 && (double)(i64)x == x;
}

/** Each field's key as it stands in compact JSON, quotes and colon included, by the index of its bit. */
static const char *const KEY_TOKEN[10] = {"\"exchange\":", "\"base\":", "\"quote\":", "\"direction\":", "\"price\":", "\"volume\":", "\"timestamp\":", "\"priceUsd\":", "\"tradeId\":", "\"receivedAt\":"};
static const u32 KEY_TOKEN_LENGTH[10] = {11, 7, 8, 12, 8, 9, 12, 11, 10, 13};

/** The keys of the last line read, in its order, by bit: lines of one feed list their keys in one order. */
static u32 key_order[10];
static u32 key_order_count;

static u32 bit_index(u32 bit) { return 31 - (u32)__builtin_clz(bit); }

/**
 * With b[p] the opening quote of a string value of field f: the index of its closing quote when the
 * string is one of the field's recent ones (its id in *id), else NONE. One pass, no hashing.
 */
static u32 match_recent(u32 f, const u8 *b, u32 p, u32 end, u32 *id) {
  if (p >= end || b[p] != '"') return NONE;
  u32 count = recent_string_count[f];
  for (u32 j = 0; j < count; j++) {
    u32 r = recent_string[f][j];
    u32 n = string_length[r];
    u32 close = p + 1 + n;
    if (close < end && b[close] == '"' && same_words(b + p + 1, arena + string_start[r], n)) {
      *id = r;
      return close;
    }
  }
  return NONE;
}

/** Where the last line read_line accepted ends: its LF, or the input's end. */
static u32 read_line_end;

/**
 * Reads the line from b[start] as a trade: 1 and the trade appended to the out_ arrays, or 0 where
 * scan-trade.ts's read() answers false (and for a full string or key table, which the general path
 * handles as well). `end` is the input's end: no token passes an LF (strings refuse control
 * characters, skip_space stops at it), so a line read to its closing brace ends at the LF after it,
 * found without looking for it first.
 */
static int read_line(const u8 *b, u32 start, u32 end, double received_at) {
  u32 exchange = NONE, base = NONE, quote = NONE;
  u32 trade_id_start = 0, trade_id_length = 0;
  u8 sell = 0;
  double price = 0, volume = 0, timestamp = 0, price_usd = 0, stamped = 0;
  u32 seen = 0;

  u32 p = skip_space(b, start, end);
  if (p >= end || b[p] != '{') return 0;
  p = skip_space(b, p + 1, end);
  u32 keys_read = 0;
  u32 line_order[10];
  for (;;) {
    // The key the last line had here, as `"key":` in one compare; else the general way.
    u32 bit = 0;
    if (keys_read < key_order_count) {
      u32 expected = key_order[keys_read];
      u32 i = bit_index(expected);
      u32 n = KEY_TOKEN_LENGTH[i];
      if (p + n <= end && same_words(b + p, (const u8 *)KEY_TOKEN[i], n)) {
        bit = expected;
        p += n;
      }
    }
    if (bit == 0) {
      u32 key_end = plain_string_end(b, p, end);
      if (key_end == NONE) return 0;
      bit = key_bit(b + p + 1, key_end - p - 1);
      if (bit == 0) return 0; // not a key of the message
      p = skip_space(b, key_end + 1, end);
      if (p >= end || b[p] != ':') return 0;
      p++;
    }
    if ((seen & bit) != 0) return 0; // a repeated key (JSON.parse keeps the last)
    seen |= bit;
    line_order[keys_read++] = bit; // at most 10: an eleventh key would repeat one
    p = skip_space(b, p, end);
    if (bit <= F_QUOTE) {
      u32 f = bit_index(bit);
      u32 id = NONE;
      u32 close = match_recent(f, b, p, end, &id);
      if (close == NONE) {
        close = plain_string_end(b, p, end);
        if (close == NONE) return 0;
        // Not a recent one (match_recent compared them all): by hash.
        id = intern(b + p + 1, close - p - 1);
        if (id == NONE) return 0; // the table is full: the general path reads it
        remember_recent(f, id);
      }
      if (bit == F_EXCHANGE) exchange = id;
      else if (bit == F_BASE) base = id;
      else quote = id;
      p = close + 1;
    } else if (bit == F_DIRECTION || bit == F_TRADE_ID) {
      u32 close = plain_string_end(b, p, end);
      if (close == NONE) return 0;
      u32 s = p + 1, n = close - p - 1;
      if (bit == F_TRADE_ID) trade_id_start = s, trade_id_length = n;
      else if (n == 3 && b[s] == 'b' && b[s + 1] == 'u' && b[s + 2] == 'y') sell = 0;
      else if (n == 4 && b[s] == 's' && b[s + 1] == 'e' && b[s + 2] == 'l' && b[s + 3] == 'l') sell = 1;
      else return 0;
      p = close + 1;
    } else {
      double value;
      p = scan_number(b, p, end, &value);
      if (p == NONE) return 0;
      if (bit == F_PRICE) price = value;
      else if (bit == F_VOLUME) volume = value;
      else if (bit == F_TIMESTAMP) timestamp = value;
      else if (bit == F_PRICE_USD) price_usd = value;
      else stamped = value;
    }
    p = skip_space(b, p, end);
    if (p >= end) return 0;
    u8 c = b[p];
    p = skip_space(b, p + 1, end);
    if (c == '}') break;
    if (c != ',') return 0;
  }
  if (p != end && b[p] != '\n') return 0; // more after the object on this line
  read_line_end = p;

  // validateTrade's checks, in the form an accepted trade passes them.
  if ((seen & REQUIRED) != REQUIRED) return 0;
  if (string_length[base] == 0 || string_length[base] > max_id_chars || string_length[exchange] > max_id_chars || string_length[quote] > max_id_chars) return 0;
  if (!(volume >= min_magnitude && volume <= max_magnitude)) return 0;
  if (!(price_usd >= min_magnitude && price_usd <= max_magnitude)) return 0;
  if (!(price > 0)) return 0;
  if (!is_safe_integer(timestamp) || timestamp < earliest_trade_ms || timestamp > received_at + max_clock_ahead_ms) return 0;
  if ((seen & F_TRADE_ID) != 0 && trade_id_length > max_id_chars) return 0;

  u32 key = recent_key_of(exchange, base, quote, sell);
  if (key == NONE) return 0;
  // This line's key order is the guess for the next line's.
  for (u32 k = 0; k < keys_read; k++) key_order[k] = line_order[k];
  key_order_count = keys_read;

  u32 t = trades_read++;
  out_price[t] = price;
  out_volume[t] = volume;
  out_timestamp[t] = timestamp;
  out_price_usd[t] = price_usd;
  out_received_at[t] = (seen & F_RECEIVED_AT) != 0 ? stamped : __builtin_nan("");
  out_key[t] = key;
  out_trade_id_start[t] = trade_id_start;
  out_trade_id_length[t] = (seen & F_TRADE_ID) != 0 ? trade_id_length : NONE;
  return 1;
}

/**
 * Scans the lines of the input from byte `from` to `length` (whole lines, each ending with an LF but
 * for the input's last), at most MAX_LINES of them: per line its end (the byte after its LF) and its
 * status (1: a trade, read into the out_ arrays; 0: the general path's to judge). Returns the number
 * of lines scanned; trades() tells how many of them were trades.
 */
EXPORT(scan) u32 scan(u32 from, u32 length, double received_at) {
  const u8 *b = &__heap_base;
  u32 lines = 0;
  trades_read = 0;
  for (u32 start = from; start < length && lines < MAX_LINES;) {
    u32 lf;
    if (read_line(b, start, length, received_at)) {
      line_status[lines] = 1;
      lf = read_line_end;
    } else {
      line_status[lines] = 0;
      lf = start;
      while (lf < length && b[lf] != '\n') lf++;
    }
    line_end[lines] = lf < length ? lf + 1 : length;
    lines++;
    start = lf + 1;
  }
  return lines;
}
