// What Chrome DevTools makes of .heapsnapshot files: each is loaded by the heap snapshot loader of the
// DevTools front end that Chromium itself bundles (the code its Memory tab runs, in headless Chromium,
// driven over the DevTools protocol on 127.0.0.1), and the figures its Summary view is built from are
// printed, one JSON line per file: the node count, the total self size, per class the count, self
// size and largest retained size (DevTools' own dominator computation).
// Usage: node [--experimental-websocket] devtools_view.js CHROMIUM PROFILE_DIR FILE...
'use strict';
const {spawn} = require('child_process');
const fs = require('fs');

const [chromium, profile, ...files] = process.argv.slice(2);
const WORKER = './entrypoints/heap_snapshot_worker/heap_snapshot_worker.js';
const TIMEOUT_MS = 120000;

function browser() {
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--remote-debugging-address=127.0.0.1',
    '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'];
  const child = spawn(chromium, args, {stdio: ['ignore', 'ignore', 'pipe']});
  const port = new Promise((resolve, reject) => {
    let seen = '';
    child.stderr.on('data', d => {
      seen += d;
      const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(seen);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', code => reject(new Error(`chromium exited (${code}): ${seen.slice(-1500)}`)));
  });
  return {child, port};
}

class Page {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.next = 0;
    this.pending = new Map();
    this.ws.onmessage = m => {
      const d = JSON.parse(m.data);
      if (d.id !== undefined && this.pending.has(d.id)) {
        this.pending.get(d.id)(d);
        this.pending.delete(d.id);
      }
    };
    this.open = new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = reject;
    });
  }

  send(method, params) {
    return new Promise(resolve => {
      const id = ++this.next;
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({id, method, params}));
    });
  }

  // Calls `fn` (source text) in the page with `args` (JSON values); its awaited result.
  async call(fn, ...args) {
    const win = await this.send('Runtime.evaluate', {expression: 'window'});
    const r = await this.send('Runtime.callFunctionOn', {
      functionDeclaration: fn, objectId: win.result.result.objectId, awaitPromise: true, returnByValue: true,
      arguments: args.map(value => ({value})),
    });
    if (r.error) throw new Error(JSON.stringify(r.error));
    if (r.result.exceptionDetails) {
      throw new Error(r.result.exceptionDetails.exception?.description ?? JSON.stringify(r.result.exceptionDetails));
    }
    return r.result.result.value;
  }
}

async function load(page, file) {
  const text = fs.readFileSync(file, 'utf8');
  await page.call(`async function(worker) {
    const m = await import(worker);
    window.heapModule = m;
    window.loader = new m.HeapSnapshotLoader.HeapSnapshotLoader({sendEvent() {}});
  }`, WORKER);
  const piece = 1 << 20;
  for (let i = 0; i < text.length; i += piece) {
    await page.call('function(chunk) { window.loader.write(chunk); }', text.slice(i, i + piece));
  }
  return page.call(`async function() {
    window.loader.close();
    // The second thread DevTools starts for the retainers and dominators, on a channel of this page.
    const channel = new MessageChannel();
    new window.heapModule.HeapSnapshot.SecondaryInitManager(channel.port2);
    const s = await window.loader.buildSnapshot(channel.port1);
    const classes = Object.values(s.aggregatesWithFilter({equals: () => false}))
      .map(a => ({name: a.name, count: a.count, self: a.self, max_retained: a.maxRet}));
    return {nodes: s.nodeCount, self_size: s.totalSize, classes};
  }`);
}

(async function main() {
  const timer = setTimeout(() => { console.error('devtools_view.js: timed out'); process.exit(2); }, TIMEOUT_MS);
  if (typeof WebSocket === 'undefined') {
    throw new Error('this node has no WebSocket (node 20 needs --experimental-websocket)');
  }
  const b = browser();
  try {
    const port = await b.port;
    const url = encodeURIComponent('devtools://devtools/bundled/devtools_app.html');
    const target = await (await fetch(`http://127.0.0.1:${port}/json/new?${url}`, {method: 'PUT'})).json();
    const page = new Page(target.webSocketDebuggerUrl);
    await page.open;
    for (let i = 0; i < 100; i++) {
      const ready = await page.call('function() { return document.readyState; }');
      if (ready === 'complete') break;
      await new Promise(r => setTimeout(r, 100));
    }
    for (const file of files) {
      console.log(JSON.stringify({file, ...(await load(page, file))}));
    }
    page.ws.close();
  } finally {
    b.child.kill('SIGKILL');
    clearTimeout(timer);
  }
})().catch(e => {
  console.error(`devtools_view.js: ${e.stack || e}`);
  process.exit(1);
});
