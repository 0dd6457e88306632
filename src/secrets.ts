// How a URL that may carry credentials is shown in logs and error messages: its scheme and
// host only. A password or token sits in the userinfo (redis://:pw@host), the path (webhook
// URLs like https://hooks.example/services/T0/B0/XXXX) or the query, so all three are hidden.

/** `scheme://host[:port]`, with `***@` where credentials were and `/…` where a path or query was. */
export function shownUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return '(not a URL)';
  }
  // only special schemes (http, https, ws, file…) have an origin; redis: does not
  const host = url.host;
  if (host === '') return `${url.protocol}…`;
  const credentials = url.username !== '' || url.password !== '' ? '***@' : '';
  const rest = (url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '' ? '/…' : '';
  return `${url.protocol}//${credentials}${host}${rest}`;
}
