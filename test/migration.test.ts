// docs/migration.md, step 4: a site closes the original's open doors in an order that never
// breaks a page or a push. Each stage here is a real server configured as the guide says, with
// a socket.io-client 2.x page written as legacy pages are (login without an ack) and a backend
// that pushes as the guide tells it to, so the guide's claims hold against the code.
import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { cleanupAll } from './support/cleanup.ts';
import { connectClient, type TestClient } from './support/clients.ts';
import { legacyPush, startServer, type TestServer } from './support/server.ts';
import { holdsFor, until } from './support/until.ts';

const PUSH_SECRET = 'push-secret-for-the-guide';
const LOGIN_SECRET = 'login-secret-for-the-guide';

/** The token a PHP backend renders: hash_hmac('sha256', (string) $uid, LOGIN_SECRET). */
const token = (uid: string) => createHmac('sha256', LOGIN_SECRET).update(uid).digest('hex');

/** A legacy page: 2.x, `login` without an ack callback, as the original's snippet does. */
async function oldPage(server: TestServer, uid: string): Promise<TestClient> {
  const page = await connectClient('v2', server.ioUrl);
  page.emit('login', uid);
  return page;
}

/** A page updated as step 4 says: the same, with the token in the login. */
async function pageWithToken(server: TestServer, uid: string): Promise<TestClient> {
  const page = await connectClient('v2', server.ioUrl);
  page.emit('login', { uid, token: token(uid) });
  return page;
}

/** The backend after step 4.1: the secret as a multipart field (PHP's array), or a Bearer header. */
async function backendPushes(server: TestServer, to: string, content: string): Promise<string[]> {
  const field = await legacyPush(server.apiUrl, { type: 'publish', to, content, secret: PUSH_SECRET }, 'multipart');
  const bearer = await fetch(`${server.apiUrl}/?${new URLSearchParams({ type: 'publish', to, content: `${content}, again` })}`, {
    headers: { authorization: `Bearer ${PUSH_SECRET}` },
  });
  return [`${field.status} ${field.body}`, `${bearer.status} ${await bearer.text()}`];
}

/** Waits until `uid` is online, by the legacy answer itself (a login is answered on its own time). */
function online(server: TestServer, uid: string): Promise<void> {
  return until(async () => {
    const answer = await legacyPush(server.apiUrl, { type: 'publish', to: uid, content: 'probe', secret: PUSH_SECRET });
    return answer.body === 'ok';
  }, `${uid} online`);
}

describe('migration order (docs/migration.md step 4)', function () {
  this.timeout(15000);
  afterEach(cleanupAll);

  it('before any secret: a backend that already sends the secret and a page that already sends a token both work', async () => {
    const server = await startServer();
    const updated = await pageWithToken(server, 'u1');
    const old = await oldPage(server, 'u2');
    await online(server, 'u1');
    await online(server, 'u2');
    expect(await backendPushes(server, 'u1', 'to u1')).to.deep.equal(['200 ok', '200 ok']);
    await updated.waitFor('new_msg', (c) => c === 'to u1, again');
    expect(await backendPushes(server, 'u2', 'to u2')).to.deep.equal(['200 ok', '200 ok']);
    await old.waitFor('new_msg', (c) => c === 'to u2, again');
    // the guide's caveat: v1 refuses an unknown `secret` field here, so v1 sends the Bearer header
    const v1 = (body: object, headers: Record<string, string> = {}) =>
      fetch(`${server.apiUrl}/api/v1/push`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    expect((await v1({ to: 'u1', data: 'x', secret: PUSH_SECRET })).status).to.equal(400);
    expect((await v1({ to: 'u1', data: 'x' }, { authorization: `Bearer ${PUSH_SECRET}` })).status).to.equal(200);
  });

  it('PUSH_SECRET first: the updated backend goes on, a missed one gets 401 fail, old pages see no change', async () => {
    const server = await startServer({ pushSecret: PUSH_SECRET });
    const old = await oldPage(server, 'u2');
    await online(server, 'u2');
    expect(await backendPushes(server, 'u2', 'hello')).to.deep.equal(['200 ok', '200 ok']);
    await old.waitFor('new_msg', (c) => c === 'hello, again');
    expect(await legacyPush(server.apiUrl, { type: 'publish', to: 'u2', content: 'missed' }, 'multipart')).to.deep.equal({ status: 401, body: 'fail' });
    expect(old.received('login_error')).to.deep.equal([]);
  });

  it('LOGIN_SECRET last: an old page that sends only its uid gets login_error and nothing else; a page with a token gets its pushes', async () => {
    const server = await startServer({ pushSecret: PUSH_SECRET, loginSecret: LOGIN_SECRET });
    const old = await oldPage(server, 'u2');
    const [error] = await old.waitFor('login_error');
    expect(error).to.deep.equal({ code: 'unauthorized', message: 'a token is required' });
    expect(await backendPushes(server, 'u2', 'to the old page')).to.deep.equal(['200 offline', '200 offline']);

    const updated = await pageWithToken(server, 'u1');
    await online(server, 'u1');
    expect(await backendPushes(server, 'u1', 'to the new page')).to.deep.equal(['200 ok', '200 ok']);
    await updated.waitFor('new_msg', (c) => c === 'to the new page, again');
    await holdsFor(() => old.received('new_msg').length === 0, 'the old page receives nothing', 200);
  });
});
