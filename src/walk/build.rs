//! Turning what a recording walk kept ([`Recorder`], [`Objects`], the visited set) into the [`Graph`],
//! after the target is resumed, on the walk's threads: each worker's stream of words and table of
//! objects is read where it lies (cut into pieces at header words), never joined into one copy first.
//! Only the filling of the edge arrays runs on one thread, in stream order, so that each node's edges
//! keep the order they were recorded in whatever the number of threads.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use super::graph::{Graph, Objects, Recorder, BIG, CONSERVATIVE_EDGE, MAX_NODES};
use super::record::{HEADER, NATIVE, ROOT};
use super::refs;
use super::visited::{Ranks, Visited};
use crate::error::{Error, Result};
use crate::memory::fasthash::AddrMap;

/// A resolved word: dropped (not an object, a native block or a root).
const DROPPED: u64 = u64::MAX;
/// A resolved header word: bit 63 and the source's node.
const SOURCE: u64 = 1 << 63;
/// Pieces of work per thread (a little more than one, so that uneven pieces even out).
const PIECES_PER_THREAD: usize = 4;

/// Runs `f` on every task, on up to `threads` threads (each takes the next task left).
fn run<T: Send>(threads: usize, tasks: Vec<T>, f: impl Fn(T) + Sync) {
    let threads = threads.clamp(1, tasks.len().max(1));
    if threads == 1 {
        tasks.into_iter().for_each(f);
        return;
    }
    let queue = Mutex::new(tasks);
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(t) = next() {
                    f(t);
                }
            });
        }
    });
}

fn atomics(n: usize) -> Vec<AtomicU32> {
    (0..n).map(|_| AtomicU32::new(0)).collect()
}

fn plain(v: Vec<AtomicU32>) -> Vec<u32> {
    v.into_iter().map(AtomicU32::into_inner).collect()
}

/// `stream` cut into about `n` pieces, each starting at a header word (or at the stream's start).
fn pieces_of(stream: &mut [u64], n: usize) -> Vec<&mut [u64]> {
    let want = stream.len().div_ceil(n.max(1)).max(1 << 16);
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() > want {
        let Some(cut) = rest[want..].iter().position(|w| w & HEADER != 0).map(|i| want + i) else { break };
        let (a, b) = rest.split_at_mut(cut);
        out.push(a);
        rest = b;
    }
    out.push(rest);
    out
}

impl Graph {
    /// Builds the graph from what a walk recorded: `visited` holds exactly the objects `objects` got.
    /// `threads`: how many may share the work (the answer is the same for any number).
    pub fn build(rec: Recorder, visited: Visited, objects: Objects, threads: usize) -> Result<Graph> {
        let n = objects.len() as u64;
        if visited.len() != n {
            return Err(Error::Other(format!(
                "the walk marked {} objects but reported {n}: the graph cannot be numbered",
                visited.len()
            )));
        }
        if n > MAX_NODES {
            return Err(Error::Other(format!("{n} objects: more than a graph holds ({MAX_NODES})")));
        }
        let ranks = visited.ranks();
        let (type_infos, tables) = objects.into_tables();
        let (types, sizes, refcounts, big) = number_objects(&ranks, &tables, n as usize, threads)?;
        drop(tables);
        let (mut streams, roots, frame_objects) = rec.into_streams();
        // Native blocks that were sources, numbered in order.
        let mut native_addrs = Vec::new();
        let mut native_nodes: AddrMap<u32> = AddrMap::default();
        for &w in streams.iter().flatten() {
            if w & (HEADER | NATIVE | ROOT) == HEADER | NATIVE {
                let a = w & !7;
                native_nodes.entry(a).or_insert_with(|| {
                    native_addrs.push(a);
                    (native_addrs.len() - 1) as u32
                });
            }
        }
        let objects = n as u32;
        let natives = native_addrs.len() as u32;
        let nodes = objects as u64 + natives as u64 + roots.len() as u64;
        if nodes > MAX_NODES {
            return Err(Error::Other(format!("{nodes} nodes: more than a graph holds ({MAX_NODES})")));
        }
        // Resolve every word in place: a header becomes its node, an edge its target (or is dropped);
        // count each node's edges.
        let degree = atomics(nodes as usize + 1);
        let total: usize = streams.iter().map(Vec::len).sum();
        let per = total.div_ceil(threads.max(1) * PIECES_PER_THREAD);
        let pieces: Vec<&mut [u64]> = streams
            .iter_mut()
            .flat_map(|s| {
                let k = s.len().div_ceil(per.max(1));
                pieces_of(s, k)
            })
            .collect();
        let resolver = Resolver { ranks: &ranks, native_nodes: &native_nodes, objects, natives };
        run(threads, pieces, |p| resolver.resolve(p, &degree));
        let degree = plain(degree);
        let total: u64 = degree.iter().map(|&d| d as u64).sum();
        if total > u32::MAX as u64 {
            return Err(Error::Other(format!("{total} references: more than a graph holds")));
        }
        // In place: the counts become each node's start, filling moves each start to the node's end
        // (the next one's start), and a shift by one gives the offsets (each node's edges in the order
        // they were recorded; no second array).
        let mut offsets = degree;
        let mut acc = 0u32;
        for o in offsets.iter_mut().take(nodes as usize) {
            let d = *o;
            *o = acc;
            acc += d;
        }
        let mut targets = vec![0u32; acc as usize];
        for stream in &streams {
            let mut cur = None;
            for &w in stream {
                if w == DROPPED {
                    continue;
                }
                if w & SOURCE != 0 {
                    cur = Some((w & !SOURCE) as usize);
                    continue;
                }
                if let Some(src) = cur {
                    targets[offsets[src] as usize] = w as u32;
                    offsets[src] += 1;
                }
            }
        }
        offsets.copy_within(0..nodes as usize, 1);
        offsets[0] = 0;
        drop(streams);
        let mut g = Graph {
            objects,
            natives,
            types,
            sizes,
            big,
            refcounts,
            type_infos,
            offsets,
            targets,
            roots,
            frame_objects,
            native_addrs,
            ranks,
            stale: 0,
        };
        g.stale = g.drop_stale();
        Ok(g)
    }
}

/// Per object in address order (its rank): type number, size, refcount; and the sizes of 4 GiB and
/// more, by node.
type Numbered = (Vec<u32>, Vec<u32>, Vec<u32>, AddrMap<u64>);

fn number_objects(ranks: &Ranks, tables: &[(Objects, Vec<u32>)], n: usize, threads: usize) -> Result<Numbered> {
    let (types, sizes, refcounts) = (atomics(n), atomics(n), atomics(n));
    let big = Mutex::new(AddrMap::default());
    let missing = Mutex::new(None);
    let per = n.div_ceil(threads.max(1) * PIECES_PER_THREAD).max(1 << 16);
    let mut tasks = Vec::new();
    for (t, (o, _)) in tables.iter().enumerate() {
        let mut at = 0;
        while at < o.addrs.len() {
            let end = (at + per).min(o.addrs.len());
            tasks.push((t, at, end));
            at = end;
        }
    }
    run(threads, tasks, |(t, from, to)| {
        let (o, number) = &tables[t];
        let mut near = (u64::MAX, 0);
        for i in from..to {
            let a = o.addrs[i];
            let Some(r) = ranks.rank_near(a, &mut near) else {
                *missing.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
                return;
            };
            let r = r as usize;
            types[r].store(number.get(o.types[i] as usize).copied().unwrap_or(0), Relaxed);
            sizes[r].store(o.sizes[i], Relaxed);
            refcounts[r].store(o.refcounts[i], Relaxed);
            if o.sizes[i] == BIG {
                let s = o.big.get(&(i as u64)).copied().unwrap_or(BIG as u64);
                big.lock().unwrap_or_else(|p| p.into_inner()).insert(r as u64, s);
            }
        }
    });
    if let Some(a) = missing.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(Error::Other(format!("object {a:#x} is not in the visited set")));
    }
    Ok((plain(types), plain(sizes), plain(refcounts), big.into_inner().unwrap_or_else(|p| p.into_inner())))
}

/// What resolving a word needs (shared by the threads).
struct Resolver<'a> {
    ranks: &'a Ranks,
    native_nodes: &'a AddrMap<u32>,
    objects: u32,
    natives: u32,
}

impl Resolver<'_> {
    /// Resolves the words of `piece` in place, adding each source's edges to its `degree`.
    fn resolve(&self, piece: &mut [u64], degree: &[AtomicU32]) {
        let (objects, natives) = (self.objects, self.natives);
        let mut cur: Option<u32> = None;
        let mut count = 0u32;
        let flush = |cur: Option<u32>, count: u32| {
            if let (Some(src), true) = (cur, count > 0) {
                degree[src as usize].fetch_add(count, Relaxed);
            }
        };
        let (mut near_src, mut near) = ((u64::MAX, 0), (u64::MAX, 0));
        for w in piece.iter_mut() {
            if *w & HEADER != 0 {
                flush(cur, count);
                count = 0;
                let node = if *w & ROOT != 0 {
                    Some(objects + natives + (*w >> 3) as u32)
                } else if *w & NATIVE != 0 {
                    self.native_nodes.get(&(*w & !7)).map(|&i| objects + i)
                } else {
                    self.ranks.rank_near(*w & !7, &mut near_src).map(|r| r as u32)
                };
                cur = node;
                *w = node.map_or(DROPPED, |v| SOURCE | v as u64);
                continue;
            }
            if cur.is_none() {
                *w = DROPPED;
                continue;
            }
            let p = *w & !7;
            let target = self
                .ranks
                .rank_near(p, &mut near)
                .map(|r| r as u32)
                .or_else(|| self.native_nodes.get(&p).map(|&i| objects + i));
            match target {
                Some(t) => {
                    let mark = if *w & refs::CONSERVATIVE != 0 { CONSERVATIVE_EDGE } else { 0 };
                    *w = (t | mark) as u64;
                    count += 1;
                }
                None => *w = DROPPED,
            }
        }
        flush(cur, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_start_at_headers_and_cover_the_stream() {
        let mut s: Vec<u64> = (0..300_000u64).map(|i| if i % 7 == 0 { (i << 4) | HEADER } else { i << 4 }).collect();
        let copy = s.clone();
        let pieces = pieces_of(&mut s, 4);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().skip(1).all(|p| p[0] & HEADER != 0));
        let joined: Vec<u64> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, copy);
    }
}
