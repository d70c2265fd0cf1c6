//! The target's native allocators, decoded from their own headers: is an address the start of a live
//! block, and how large is it. Used to validate what a conservative scan finds, and to find the memory a
//! C extension's object points to (a numpy array's data, a deque's blocks) so that it can be scanned.

pub mod glibc;
