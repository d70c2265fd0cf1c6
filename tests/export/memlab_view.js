// What memlab makes of a .heapsnapshot memspy exported from fixtures/retention.py, as JSON on stdout:
// its node count and total self size, the object node it finds retaining the most (its own dominator
// computation), the holder list REGISTRY['cache'] reached from the node `module __main__` and what
// memlab says it retains, and memlab's retainer trace (shortest path from its roots) of the first
// leaked object, REGISTRY['cache'][0].items[0].
// Usage: NODE_PATH=<memlab's node_modules> node memlab_view.js FILE
'use strict';
const {getFullHeapFromFile} = require('@memlab/heap-analysis');

function edgeTo(node, name) {
  for (const e of node.references) {
    if (String(e.name_or_index) === String(name)) {
      return e.toNode;
    }
  }
  throw new Error(`${node.name} (@${node.id}) has no edge ${name}`);
}

(async function main() {
  const heap = await getFullHeapFromFile(process.argv[2]);
  let nodes = 0;
  let selfSize = 0;
  let largest = null;
  let module = null;
  heap.nodes.forEach(node => {
    nodes += 1;
    selfSize += node.self_size;
    const isObject = node.type !== 'synthetic' && node.type !== 'native';
    if (isObject && (largest === null || node.retainedSize > largest.retainedSize)) {
      largest = node;
    }
    if (node.type === 'object' && node.name === 'module __main__') {
      module = node;
    }
  });
  if (module === null) {
    throw new Error('no node named "module __main__"');
  }
  const globals = edgeTo(module, '__dict__');
  const holderList = edgeTo(edgeTo(globals, 'REGISTRY'), 'cache');
  let holder = edgeTo(holderList, 0);
  let items = holder.references.find(e => e.name_or_index === 'items');
  if (!items) {
    // 3.9/3.10 (and an instance whose dict was made): the attribute is a key of its __dict__.
    items = edgeTo(holder, '__dict__').references.find(e => e.name_or_index === 'items');
  }
  const leak = edgeTo(items.toNode, 0);
  // The retainer trace: memlab's shortest-path tree, from the leak up to its root.
  const trace = [];
  let n = leak;
  for (let i = 0; n && n.pathEdge && i < 1000; i++) {
    const e = n.pathEdge;
    trace.unshift({edge: String(e.name_or_index), edge_type: e.type, to: n.name});
    n = e.fromNode;
  }
  if (n) {
    trace.unshift({edge: '', edge_type: '', to: n.name});
  }
  const out = {
    nodes,
    self_size: selfSize,
    largest: {id: largest.id, name: largest.name, retained: largest.retainedSize},
    holder_list: {id: holderList.id, name: holderList.name, retained: holderList.retainedSize},
    leak: {id: leak.id, name: leak.name, retained: leak.retainedSize, dominator: leak.dominatorNode && leak.dominatorNode.name},
    trace,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch(e => {
  process.stderr.write(`memlab_view: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
