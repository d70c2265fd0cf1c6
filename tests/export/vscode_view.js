// What VS Code's heap snapshot viewer makes of .heapsnapshot files memspy exported from
// fixtures/retention.py: its parser (@vscode/v8-heap-parser, the WebAssembly build the viewer loads)
// decodes each file, and this prints, one JSON line per file: the node count and total self size, every
// class group of its summary (name, count, self size, retained size), and the chain of retainers of one
// leaked object (the one retaining the most among __main__.Leak), each the first node the parser lists
// as retaining the one below it.
// Usage: NODE_PATH=<node_modules holding @vscode/v8-heap-parser> node vscode_view.js FILE...
'use strict';
const fs = require('fs');
const parser = require('@vscode/v8-heap-parser');

function view(file) {
  const graph = parser.decode_bytes(fs.readFileSync(file));
  const groups = graph.get_class_groups(0, 1 << 30, false);
  let nodes = 0;
  let selfSize = 0n;
  const classes = groups.map(c => {
    nodes += c.children_len;
    selfSize += c.self_size;
    return {name: c.name(), count: c.children_len, self: Number(c.self_size), retained: Number(c.retained_size)};
  });
  const li = groups.findIndex(c => c.name() === '__main__.Leak');
  if (li < 0) {
    throw new Error(`${file}: no class __main__.Leak`);
  }
  const leak = graph.class_children(li, 0, 1, parser.WasmSortBy.RetainedSize)[0];
  const retainers = graph.get_all_retainers(leak.index, 16);
  const chain = [{name: leak.name(), retained: Number(leak.retained_size)}];
  let at = leak.index;
  for (let i = 0; i < 16; i++) {
    const up = retainers.find(r => r.retains_index === at && r.index !== at);
    if (!up) {
      break;
    }
    chain.push({name: up.name(), edge_type: up.edge_typ, retained: Number(up.retained_size)});
    at = up.index;
  }
  return {file, nodes, self_size: Number(selfSize), classes, chain};
}

for (const file of process.argv.slice(2)) {
  try {
    process.stdout.write(JSON.stringify(view(file)) + '\n');
  } catch (e) {
    process.stderr.write(`vscode_view: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  }
}
