// Which host names only this machine reaches, decided in one place: for the dashboard's --host warning
// and its Host check (which once disagreed: --host 127.0.0.2 neither warned nor checked Host headers,
// so a page on another domain rebound to 127.0.0.2 could read the dashboard), and for telling that two
// SQL store URLs name one server.

/** 127.0.0.0/8 (all of it is loopback), ::1 (also as [::1], its form in a Host header) and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
