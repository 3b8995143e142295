/**
 * The cluster harness itself: a 3-master cluster of each kind forms, routes keys to the master
 * that owns their slot, moves slots with a reshard, and survives the loss of one master for the
 * other masters' slots.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keySlot, startCluster } from "./cluster_harness.ts";
import { KINDS } from "./_helpers.ts";

for (const kind of KINDS) {
  describe(`${kind} cluster harness`, () => {
    it("forms a 3-master cluster that routes, reshards and survives a lost master", async () => {
      const cluster = await startCluster(kind);
      try {
        assert.equal(cluster.nodes.length, 3);
        assert.equal(cluster.seeds.split(",").length, 3);
        // Keys spread over the three masters; the cli in cluster mode follows the redirects.
        const owners = new Set<number>();
        for (let i = 0; i < 30; i++) {
          await cluster.cli("SET", `k${i}`, String(i));
          owners.add(await cluster.nodeOf(`k${i}`));
        }
        assert.deepEqual([...owners].sort(), [0, 1, 2]);
        assert.equal(await cluster.cli("GET", "k7"), "7");

        // Slots move from the lowest up: a reshard of 100 slots of node 0 (slots 0-5460) moves
        // a key of slot < 100, with its value, to node 1.
        let n = 0;
        while (keySlot(`moved${n}`) >= 100) n++;
        const key = `moved${n}`;
        assert.equal(Number(await cluster.cli("CLUSTER", "KEYSLOT", key)), keySlot(key));
        await cluster.cli("SET", key, "v");
        assert.equal(await cluster.nodeOf(key), 0);
        await cluster.reshard(0, 1, 100);
        assert.equal(await cluster.nodeOf(key), 1);
        assert.equal(await cluster.cli("GET", key), "v");
        assert.equal(keySlot("{user1}.a"), keySlot("{user1}.b"));

        // One master killed: the cluster still answers for the slots of the others.
        const victim = cluster.nodes[2];
        await victim.kill();
        let answered = 0;
        for (const k of [...Array(30).keys()].map((i) => `k${i}`)) {
          if ((await cluster.nodeOf(k)) !== 2) {
            assert.equal(await cluster.cli("GET", k), k.slice(1));
            answered++;
          }
        }
        assert.ok(answered > 0);
      } finally {
        await cluster.stop();
      }
    });
  });
}
