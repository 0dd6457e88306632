// docs/protocol.md §4, the legacy push API: every way a backend calls it, and the exact answers.
import { expect } from 'chai';
import { request } from 'node:http';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient, type TestClient } from './support/clients.ts';
import { legacyPush, startServer, type PushMethod, type TestServer } from './support/server.ts';
import { escapeHtml } from '../src/names.ts';

/** What PHP's curl sends for CURLOPT_POSTFIELDS with an array, Expect header included. */
function phpCurlMultipart(url: string, fields: Record<string, string>): Promise<{ status: number; body: string }> {
  const boundary = '------------------------' + 'a1b2c3d4e5f60718';
  const parts = Object.entries(fields).map(
    ([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`,
  );
  const body = Buffer.from(parts.join('') + `--${boundary}--\r\n`);
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': body.length,
        expect: '100-continue',
        accept: '*/*',
      },
    });
    req.on('continue', () => req.end(body)); // curl waits for "100 Continue" before the body
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

describe('legacy push API', () => {
  let server: TestServer;
  let alice: TestClient;

  beforeEach(async () => {
    server = await startServer();
    alice = await connectClient('v4', server.ioUrl);
    await alice.login('alice');
  });
  afterEach(cleanupAll);

  const methods: PushMethod[] = ['get', 'form', 'multipart', 'json'];
  for (const method of methods) {
    it(`${method}: pushes to an online uid (ok), with content escaped and unicode intact`, async () => {
      const content = `<script>alert("x")</script> & 'y' 你好, мир, 🎉`;
      const res = await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content }, method);
      expect(res).to.deep.equal({ status: 200, body: 'ok' });
      expect(await alice.waitFor('new_msg')).to.deep.equal([
        '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#039;y&#039; 你好, мир, 🎉',
      ]);
    });

    it(`${method}: answers offline for a uid with no page, and fail without type=publish`, async () => {
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'nobody', content: 'x' }, method))
        .to.deep.equal({ status: 200, body: 'offline' });
      expect(await legacyPush(server.apiUrl, { to: 'alice', content: 'x' }, method))
        .to.deep.equal({ status: 200, body: 'fail' });
      expect(await legacyPush(server.apiUrl, { type: 'Publish', to: 'alice', content: 'x' }, method))
        .to.deep.equal({ status: 200, body: 'fail' });
    });
  }

  it('answers the README examples byte for byte', async () => {
    const get = await fetch(`${server.apiUrl}/?type=publish&to=&content=hello`);
    expect(get.status).to.equal(200);
    expect(get.headers.get('content-type')).to.equal('text/plain; charset=utf-8');
    expect(Buffer.from(await get.arrayBuffer()).toString('latin1')).to.equal('ok');
    const post = await fetch(server.apiUrl + '/', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' }, // what curl -d sends
      body: 'type=publish&to=1445590039000&content=hi',
    });
    expect(await post.text()).to.equal('offline');
    expect(await alice.waitFor('new_msg')).to.deep.equal(['hello']);
  });

  it('accepts the multipart body PHP curl sends for an array, with Expect: 100-continue', async () => {
    const res = await phpCurlMultipart(server.apiUrl + '/', { type: 'publish', to: 'alice', content: 'from php ' + 'x'.repeat(2000) });
    expect(res).to.deep.equal({ status: 200, body: 'ok' });
    expect(await alice.waitFor('new_msg')).to.deep.equal(['from php ' + 'x'.repeat(2000)]);
  });

  it('accepts any path and any method', async () => {
    for (const path of ['/', '/push', '/a/b/c.php', '/api']) {
      expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content: path }, 'get', path))
        .to.deep.equal({ status: 200, body: 'ok' });
      expect(await alice.waitFor('new_msg')).to.deep.equal([path]);
    }
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const res = await fetch(`${server.apiUrl}/x?type=publish&to=alice&content=${method}`, { method });
      expect(await res.text()).to.equal('ok');
      expect(await alice.waitFor('new_msg')).to.deep.equal([method]);
    }
  });

  it('takes parameters from the body when it has any, else from the query string', async () => {
    // body fields win over the query
    let res = await fetch(`${server.apiUrl}/?type=nope&content=from-query`, {
      method: 'POST',
      body: new URLSearchParams({ type: 'publish', to: 'alice', content: 'from-body' }),
    });
    expect(await res.text()).to.equal('ok');
    expect(await alice.waitFor('new_msg')).to.deep.equal(['from-body']);
    // an empty body, or one of a type that has no fields, leaves the query
    for (const init of [
      { method: 'POST' },
      { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'type=nope' },
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' },
    ]) {
      res = await fetch(`${server.apiUrl}/?type=publish&to=alice&content=from-query`, init);
      expect(await res.text()).to.equal('ok');
      expect(await alice.waitFor('new_msg')).to.deep.equal(['from-query']);
    }
  });

  it('takes a multipart field named __proto__ as a field: that body has fields, so the query string is not read', async () => {
    // as PHP's $_POST: a body whose only field is __proto__ has one; a plain object dropped it
    const fields = Object.fromEntries([['__proto__', 'x']]) as Record<string, string>;
    const res = await phpCurlMultipart(`${server.apiUrl}/?type=publish&to=alice&content=from-query`, fields);
    expect(res).to.deep.equal({ status: 200, body: 'fail' });
  });

  it('reaches every page of a uid, and broadcasts reach sockets that never logged in', async () => {
    const alice2 = await connectClient('v2', server.ioUrl);
    await alice2.login('alice');
    const anonymous = await connectClient('v2', server.ioUrl);
    await legacyPush(server.apiUrl, { type: 'publish', to: 'alice', content: 'both pages' });
    await legacyPush(server.apiUrl, { type: 'publish', to: '', content: 'everyone' });
    for (const c of [alice, alice2]) {
      expect(await c.waitFor('new_msg')).to.deep.equal(['both pages']);
      expect(await c.waitFor('new_msg')).to.deep.equal(['everyone']);
    }
    expect(await anonymous.waitFor('new_msg')).to.deep.equal(['everyone']);
    expect(anonymous.received('new_msg')).to.have.length(1);
  });

  it('takes a JSON number as a uid, and the last of a repeated parameter as PHP does', async () => {
    const bob = await connectClient('v4', server.ioUrl);
    await bob.login(42);
    let res = await fetch(server.apiUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'publish', to: 42, content: 'json number' }),
    });
    expect(await res.text()).to.equal('ok');
    expect(await bob.waitFor('new_msg')).to.deep.equal(['json number']);
    res = await fetch(`${server.apiUrl}/?type=publish&to=bob&to=42&content=last`);
    expect(await res.text()).to.equal('ok');
    expect(await bob.waitFor('new_msg')).to.deep.equal(['last']);
  });

  it('escapes exactly as PHP htmlspecialchars does', () => {
    expect(escapeHtml(`a&b<c>d"e'f`)).to.equal('a&amp;b&lt;c&gt;d&quot;e&#039;f');
    expect(escapeHtml('&amp;')).to.equal('&amp;amp;'); // double_encode defaults to true
    expect(escapeHtml('plain')).to.equal('plain');
  });
});
