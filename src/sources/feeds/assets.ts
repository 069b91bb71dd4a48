// The one table from exchange symbols to CoinCap asset ids (DESIGN.md: "an unknown symbol is
// lowercased, never dropped").

const COINCAP_IDS: Record<string, string> = {
  BTC: 'bitcoin', XBT: 'bitcoin', ETH: 'ethereum', USDT: 'tether', USD: 'united-states-dollar', USDC: 'usd-coin',
  EUR: 'euro', GBP: 'british-pound-sterling', SOL: 'solana', XRP: 'xrp', ADA: 'cardano', DOGE: 'dogecoin', XDG: 'dogecoin',
  LTC: 'litecoin', DOT: 'polkadot', BNB: 'binance-coin', TRX: 'tron', AVAX: 'avalanche', LINK: 'chainlink', MATIC: 'polygon',
  BCH: 'bitcoin-cash', DAI: 'multi-collateral-dai', BUSD: 'binance-usd', TUSD: 'trueusd', FDUSD: 'first-digital-usd',
  USDP: 'paxos-standard', SHIB: 'shiba-inu', UNI: 'uniswap', ATOM: 'cosmos', XLM: 'stellar', ETC: 'ethereum-classic',
  SKL: 'skale-network', BAND: 'band-protocol', DASH: 'dash', NMR: 'numeraire', NU: 'nucypher',
};

/** Quotes whose price is a US-dollar price (DESIGN.md: priceUsd = price for USD and USD stablecoins). */
const USD_QUOTES = new Set(['united-states-dollar', 'tether', 'usd-coin', 'binance-usd', 'trueusd', 'first-digital-usd', 'paxos-standard', 'multi-collateral-dai']);

export function coincapId(symbol: string): string {
  const upper = symbol.toUpperCase();
  return COINCAP_IDS[upper] ?? symbol.toLowerCase();
}

export function isUsdQuote(coincapQuote: string): boolean {
  return USD_QUOTES.has(coincapQuote);
}

/** Quote currencies Binance and Bybit glue onto a symbol, longest first ("btcfdusd" is btc/fdusd, not btcfd/usd). */
const GLUED_QUOTES = ['FDUSD', 'USDT', 'USDC', 'BUSD', 'TUSD', 'USDP', 'DAI', 'USD', 'EUR', 'GBP', 'TRY', 'BTC', 'ETH', 'BNB'];

/** Splits "BTCUSDT" into ["BTC", "USDT"]; an unknown quote leaves the whole symbol as the base. */
export function splitGluedSymbol(symbol: string): [string, string] {
  const upper = symbol.toUpperCase();
  for (const q of GLUED_QUOTES) {
    if (upper.length > q.length && upper.endsWith(q)) return [upper.slice(0, -q.length), q];
  }
  return [upper, ''];
}
