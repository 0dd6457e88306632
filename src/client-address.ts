// The address a request is counted and logged under (MAX_CONNECTIONS_PER_IP, PUSH_RATE_PER_IP).
// Behind a proxy every peer is the proxy, so for a peer listed in TRUST_PROXY the client is
// read from X-Forwarded-For; from anyone else that header is the client's own claim and is
// ignored.
import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, SocketAddress } from 'node:net';

/** One TRUST_PROXY entry: an address or a subnet. */
export interface ProxyEntry {
  address: string;
  family: 'ipv4' | 'ipv6';
  /** The subnet's prefix length; null for one address. */
  prefix: number | null;
}

/**
 * A hop of X-Forwarded-For (or a peer) in one spelling per address, or null when it is not an
 * address. Ports (`1.2.3.4:80`, `[::1]:80`) and IPv6 zones are dropped, IPv6 is compressed and
 * lower-cased, and an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, a dual-stack listener's peer)
 * becomes the IPv4 address, so one client is one key however it is written.
 */
export function canonicalAddress(text: string): string | null {
  let host = text.trim();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end === -1 || !/^(:\d{1,5})?$/.test(host.slice(end + 1))) return null;
    host = host.slice(1, end);
  } else {
    const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(host);
    if (withPort) host = withPort[1]!;
  }
  const family = isIP(host);
  if (family === 4) return host;
  if (family !== 6) return null;
  const compressed = new SocketAddress({ address: host, family: 'ipv6' }).address;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(compressed);
  return mapped ? mapped[1]! : compressed;
}

/** Parses one TRUST_PROXY entry (`10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`); null when it is none. */
export function parseProxyEntry(text: string): ProxyEntry | null {
  const [host = '', prefixText, ...more] = text.trim().split('/');
  if (more.length > 0) return null;
  const family = isIP(host);
  if (family === 0) return null;
  if (prefixText === undefined) return { address: host, family: family === 4 ? 'ipv4' : 'ipv6', prefix: null };
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > (family === 4 ? 32 : 128)) return null;
  return { address: host, family: family === 4 ? 'ipv4' : 'ipv6', prefix };
}

/**
 * Hops of X-Forwarded-For looked at, from the right, before the walk stops: a real chain of
 * proxies is a few hops, and a header of thousands of trusted addresses costs no more.
 */
const MAX_HOPS = 32;

/** Resolves the client address of requests against TRUST_PROXY. */
export class ClientAddresses {
  private readonly trusted: BlockList | null;

  /** `proxies`: TRUST_PROXY's entries, validated by the config; a bad one throws. */
  constructor(proxies: readonly string[]) {
    if (proxies.length === 0) {
      this.trusted = null;
      return;
    }
    const list = new BlockList();
    for (const text of proxies) {
      const p = parseProxyEntry(text);
      if (p === null) throw new Error(`not a proxy address or CIDR: ${JSON.stringify(text)}`);
      if (p.prefix === null) list.addAddress(p.address, p.family);
      else list.addSubnet(p.address, p.prefix, p.family);
    }
    this.trusted = list;
  }

  /** The address `req` is counted and logged under. */
  of(req: IncomingMessage): string {
    const header = req.headers['x-forwarded-for'];
    return this.resolve(req.socket.remoteAddress ?? '', Array.isArray(header) ? header.join(',') : header);
  }

  /**
   * From a trusted peer: the right-most X-Forwarded-For hop that is not itself trusted (each
   * proxy appends the address it was reached from, so that is the first one no trusted proxy
   * vouches for); the left-most when every hop is trusted. A hop that is not an address (or
   * one past MAX_HOPS) stops the walk at the trusted hop that passed it on, so it counts
   * against that proxy and never under a name a client chose. From any other peer: the peer.
   */
  resolve(peer: string, forwardedFor: string | undefined): string {
    let client = canonicalAddress(peer) ?? peer;
    if (this.trusted === null || forwardedFor === undefined || !this.isTrusted(client)) return client;
    let end = forwardedFor.length;
    for (let hops = 0; end >= 0 && hops < MAX_HOPS; hops++) {
      const start = forwardedFor.lastIndexOf(',', end - 1);
      const hop = canonicalAddress(forwardedFor.slice(start + 1, end));
      if (hop === null) return client;
      client = hop;
      if (!this.isTrusted(hop)) return hop;
      end = start;
    }
    return client;
  }

  private isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted!.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
