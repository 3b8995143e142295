/**
 * The topology a config asks for: a cluster when it names cluster seeds (`mode: "cluster"`),
 * else a single server. The one place that tells the two apart.
 *
 * @module
 */

import type { Topology, TopologyOptions } from "../servers.ts";
import { clusterTopology } from "./cluster.ts";
import { standaloneTopology } from "./standalone.ts";

/** The topology of `options.config` (no I/O until its servers are opened). */
export function chooseTopology(options: TopologyOptions): Topology {
  return options.config.mode === "cluster" ? clusterTopology(options) : standaloneTopology(options);
}
