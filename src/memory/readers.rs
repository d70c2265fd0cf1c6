//! One reader per walking thread: [`ThreadReaders`] splits a memory source into readers that threads
//! can own (a cache hands each thread what it holds of that thread's share of the address space), and
//! takes their caches back afterwards.

use super::chunks::ChunkCache;
use super::copy::CopiedMemory;
use super::{CachedMemory, Memory, RemoteMemory};

/// A memory the full walk can read from several threads.
pub trait ThreadReaders: Memory {
    type Reader<'s>: Memory + Send
    where
        Self: 's;
    /// `n` readers, one per thread (empty: walk in one thread). `owner` tells which thread owns an
    /// address, so that a cache can hand each reader what it holds of that reader's share.
    fn readers(&self, n: usize, owner: &dyn Fn(u64) -> usize) -> Vec<Self::Reader<'_>>;
    /// Takes back what the readers cached (so that later readers can be handed it again).
    fn take_back<'s>(&'s self, _readers: Vec<Self::Reader<'s>>) {}
    /// The address ranges that may hold objects (readable memory), for the parallel walk of the GC
    /// lists; empty when unknown (the lists are then walked by one thread).
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        Vec::new()
    }
    /// Statistics of one reader, for `-vv` logs.
    fn describe(_reader: &Self::Reader<'_>) -> String {
        String::new()
    }
}

impl<M: Memory + Clone + Send + 'static> ThreadReaders for ChunkCache<M> {
    type Reader<'s> = ChunkCache<M>;
    fn readers(&self, n: usize, owner: &dyn Fn(u64) -> usize) -> Vec<Self::Reader<'_>> {
        self.split(n, owner)
    }
    fn take_back<'s>(&'s self, readers: Vec<Self::Reader<'s>>) {
        self.absorb(readers)
    }
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges().to_vec()
    }
    fn describe(reader: &Self::Reader<'_>) -> String {
        format!("{:?}", reader.stats())
    }
}

impl ThreadReaders for CopiedMemory<RemoteMemory> {
    type Reader<'s> = &'s CopiedMemory<RemoteMemory>;
    fn readers(&self, n: usize, _owner: &dyn Fn(u64) -> usize) -> Vec<Self::Reader<'_>> {
        vec![self; n]
    }
    fn object_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges()
    }
}

impl ThreadReaders for CachedMemory<RemoteMemory> {
    type Reader<'s> = RemoteMemory;
    fn readers(&self, _n: usize, _owner: &dyn Fn(u64) -> usize) -> Vec<Self::Reader<'_>> {
        Vec::new()
    }
}
