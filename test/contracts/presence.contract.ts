// The Presence contract, run against every implementation (memory, Redis). What webhooks
// and the online counts rely on: the first page of a uid says so, its last page says so.
import { expect } from 'chai';
import type { Presence } from '../../src/presence.ts';

/** A fresh, empty presence; the suite closes it. */
export type PresenceFactory = () => Promise<Presence>;

export function presenceContract(name: string, create: PresenceFactory): void {
  describe(`Presence contract: ${name}`, () => {
    const opened: Presence[] = [];
    const open = async () => {
      const presence = await create();
      opened.push(presence);
      return presence;
    };
    afterEach(async () => {
      for (const p of opened.splice(0)) await p.close();
    });

    it('says which page is the first and which the last of a uid', async () => {
      const presence = await open();
      expect(await presence.addPage('u')).to.equal(true);
      expect(await presence.addPage('u')).to.equal(false);
      expect(await presence.addPage('u')).to.equal(false);
      expect(await presence.removePage('u')).to.equal(false);
      expect(await presence.removePage('u')).to.equal(false);
      expect(await presence.removePage('u')).to.equal(true);
      // online again after that: a first page again
      expect(await presence.addPage('u')).to.equal(true);
    });

    it('knows whether a uid has a page', async () => {
      const presence = await open();
      expect(await presence.isOnline('u')).to.equal(false);
      await presence.addPage('u');
      await presence.addPage('u');
      expect(await presence.isOnline('u')).to.equal(true);
      expect(await presence.isOnline('other')).to.equal(false);
      await presence.removePage('u');
      expect(await presence.isOnline('u')).to.equal(true);
      await presence.removePage('u');
      expect(await presence.isOnline('u')).to.equal(false);
    });

    it('counts distinct uids and pages', async () => {
      const presence = await open();
      expect(await presence.counts()).to.deep.equal({ users: 0, pages: 0 });
      await presence.addPage('a');
      await presence.addPage('a');
      await presence.addPage('b');
      await presence.addPage('c');
      expect(await presence.counts()).to.deep.equal({ users: 3, pages: 4 });
      await presence.removePage('a');
      expect(await presence.counts()).to.deep.equal({ users: 3, pages: 3 });
      await presence.removePage('b');
      expect(await presence.counts()).to.deep.equal({ users: 2, pages: 2 });
      await presence.removePage('a');
      await presence.removePage('c');
      expect(await presence.counts()).to.deep.equal({ users: 0, pages: 0 });
    });

    it('takes any uid a login accepts, as it is', async () => {
      const presence = await open();
      // separators and wildcards a key-value store might read as structure, unicode, digits
      const uids = ['a:b', 'a', 'b', '*', 'x y\nz', '用户', '1445590039000', 'a'.repeat(256)];
      for (const uid of uids) expect(await presence.addPage(uid)).to.equal(true);
      for (const uid of uids) expect(await presence.isOnline(uid)).to.equal(true);
      expect(await presence.isOnline('a:')).to.equal(false);
      expect(await presence.counts()).to.deep.equal({ users: uids.length, pages: uids.length });
      for (const uid of uids) expect(await presence.removePage(uid)).to.equal(true);
      expect(await presence.counts()).to.deep.equal({ users: 0, pages: 0 });
    });

    it('tells pages per uid, and lists every online uid page by page', async () => {
      const presence = await open();
      const uids = Array.from({ length: 57 }, (_, i) => `list-${i}`);
      for (const uid of uids) await presence.addPage(uid);
      await presence.addPage('list-0');
      expect(await presence.pagesOf('list-0')).to.equal(2);
      expect(await presence.pagesOf('list-1')).to.equal(1);
      expect(await presence.pagesOf('nobody')).to.equal(0);
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page: { uids: string[]; cursor: string | null } = await presence.list(cursor, 10);
        seen.push(...page.uids);
        cursor = page.cursor;
        pages++;
        expect(pages, 'the walk ends').to.be.below(100);
      } while (cursor !== null);
      expect([...new Set(seen)].sort()).to.deep.equal([...uids].sort());
      expect(seen.length).to.equal(uids.length); // none twice
    });

    it('ignores removing a page that is not there', async () => {
      const presence = await open();
      expect(await presence.removePage('nobody')).to.equal(false);
      await presence.addPage('u');
      expect(await presence.removePage('u')).to.equal(true);
      expect(await presence.removePage('u')).to.equal(false);
      expect(await presence.counts()).to.deep.equal({ users: 0, pages: 0 });
      // the counts never went below zero: a new page counts as one
      await presence.addPage('v');
      expect(await presence.counts()).to.deep.equal({ users: 1, pages: 1 });
    });

    it('forgets its pages on close(), which may be called twice', async () => {
      const presence = await create(); // closed here, not by the suite
      await presence.addPage('u');
      await presence.addPage('v');
      await presence.close();
      await presence.close();
      expect(await presence.counts()).to.deep.equal({ users: 0, pages: 0 });
      expect(await presence.isOnline('u')).to.equal(false);
    });
  });
}
