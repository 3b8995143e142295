/**
 * Redis Cluster hash slots, computed locally: CRC16 (XMODEM) of the key, or of its hash tag, mod
 * 16384, exactly as the server computes them. The cluster provider uses it to group a batch's keys
 * by slot (one MGET per slot, since a multi-key command must stay within one slot).
 *
 * @module
 */

/** The number of hash slots of a Redis / Valkey cluster. */
export const SLOT_COUNT = 16384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    table[byte] = crc;
  }
  return table;
})();

const encoder = new TextEncoder();

/**
 * The part of `key` the cluster hashes: the text between the first `{` and the first `}` after
 * it when that text is not empty (the hash tag), else the whole key.
 *
 * @example Hash tags
 * ```ts
 * import { hashTagOf } from "./slots.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(hashTagOf("cache:tenant:{acme}:users:ab12"), "acme");
 * assert.equal(hashTagOf("a{}b{c}"), "a{}b{c}"); // an empty tag counts as none
 * assert.equal(hashTagOf("x{{y}z"), "{y");
 * ```
 *
 * @param key A key.
 * @returns The hashed part of the key.
 */
export function hashTagOf(key: string): string {
  const open = key.indexOf("{");
  if (open === -1) return key;
  const close = key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/**
 * The hash slot of `key`, as `CLUSTER KEYSLOT` answers it.
 *
 * @example Keys with the same hash tag share a slot
 * ```ts
 * import { keySlot } from "./slots.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(keySlot("foo"), 12182);
 * assert.equal(keySlot("{user1}.a"), keySlot("{user1}.b"));
 * ```
 *
 * @param key A key (its UTF-8 bytes are hashed).
 * @returns The slot, from 0 to 16383.
 */
export function keySlot(key: string): number {
  const hashed = hashTagOf(key);
  let crc = 0;
  for (let i = 0; i < hashed.length; i++) {
    const code = hashed.charCodeAt(i);
    // ASCII is its own UTF-8; anything else is hashed from its encoded bytes.
    if (code > 0x7f) return crcOf(encoder.encode(hashed)) % SLOT_COUNT;
    crc = ((crc << 8) & 0xff00) ^ CRC16_TABLE[((crc >> 8) ^ code) & 0xff];
  }
  return crc % SLOT_COUNT;
}

function crcOf(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xff00) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc;
}

/**
 * Groups the positions of `keys` by hash slot, in first-seen order, so each group can be one
 * multi-key command and the replies put back in input order.
 *
 * @example Two slots
 * ```ts
 * import { groupBySlot } from "./slots.ts";
 * import assert from "node:assert/strict";
 *
 * const groups = groupBySlot(["{a}1", "{b}1", "{a}2"]);
 * assert.deepEqual([...groups.values()], [[0, 2], [1]]);
 * ```
 *
 * @param keys The keys of a batch.
 * @returns Slot → positions in `keys`.
 */
export function groupBySlot(keys: readonly string[]): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const slot = keySlot(keys[i]);
    const group = groups.get(slot);
    if (group) group.push(i);
    else groups.set(slot, [i]);
  }
  return groups;
}
