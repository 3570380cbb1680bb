import { describe, expect, it } from 'vitest';
import { byteBoundedGroups, MAX_BATCH_BYTES } from '../../src/jobs/inbound/batch.js';

/** A batch reads its raw messages into memory: their bytes, not their count, bound one transaction. */
describe('byte-bounded groups of a batch', () => {
  const MB = 2 ** 20;

  it('keeps small messages in one group, in order', () => {
    expect(byteBoundedGroups([1, 2, 3].map((id) => ({ id, size: 5 * 1024 })))).toEqual([[1, 2, 3]]);
  });

  it('splits 25 MB messages into groups within the limit, and a message above the limit goes alone', () => {
    const rows = [
      { id: 1, size: 25 * MB },
      { id: 2, size: 25 * MB },
      { id: 3, size: 25 * MB },
      { id: 4, size: 1024 },
      { id: 5, size: MAX_BATCH_BYTES + 1 },
      { id: 6, size: 1024 },
    ];
    expect(byteBoundedGroups(rows)).toEqual([[1, 2], [3, 4], [5], [6]]);
  });

  it('has no groups for no rows', () => {
    expect(byteBoundedGroups([])).toEqual([]);
  });
});
