//! Gives heap memory that a burst freed back to the kernel.
//!
//! glibc keeps freed chunks in its arenas (one per thread that allocated: the engine, the
//! sweep workers, the output thread), so after an exec storm RSS would stay at the storm's
//! peak although procwatch holds only a few MiB. `malloc_trim` returns whole free pages.

/// Free bytes glibc must be holding before a trim is worth its walk over the arenas.
const TRIM_ABOVE: usize = 1024 * 1024;

/// Heap bytes in use and held free by the allocator, over all arenas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUse {
    /// Bytes in live allocations.
    pub in_use: usize,
    /// Bytes freed but still held in the arenas.
    pub free: usize,
}

/// What the allocator holds now (`None` where the C library cannot say).
pub fn heap_use() -> Option<HeapUse> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads allocator statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(HeapUse {
            in_use: info.uordblks.saturating_add(info.hblkhd),
            free: info.fordblks,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns free heap pages to the kernel when more than [`TRIM_ABOVE`] is held free; true if
/// it trimmed. Cheap enough to call after every sweep.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if heap_use().is_some_and(|h| h.free > TRIM_ABOVE) {
            // SAFETY: malloc_trim only releases memory the allocator holds free.
            unsafe { libc::malloc_trim(0) };
            return true;
        }
        false
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident anonymous memory of this process in KiB.
    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon")
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_burst_is_given_back() {
        // The allocator's counters and RssAnon are process-wide, and other tests allocate and
        // free in parallel threads: judge the trim in a process of its own (this test binary,
        // running only this test).
        const CHILD: &str = "PROCWATCH_MEMORY_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().expect("test binary");
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "memory::tests::a_burst_is_given_back",
                    "--test-threads=1",
                    "--include-ignored",
                ])
                .env(CHILD, "1")
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // Many small blocks (below the mmap threshold, so they live in an arena), with every
        // other one kept so the free ones are interleaved, as a storm leaves them.
        let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
        let mut kept = Vec::new();
        for (i, b) in blocks.drain(..).enumerate() {
            if i % 64 == 0 {
                kept.push(b);
            }
        }
        let before = rss_anon_kib();
        let held = heap_use().expect("glibc").free;
        assert!(held > TRIM_ABOVE, "only {held} bytes free after the burst");
        assert!(release_free_heap(), "did not trim with {held} bytes free");
        let after = rss_anon_kib();
        assert!(
            after + 8 * 1024 < before,
            "RssAnon {before} KiB before the trim, {after} KiB after"
        );
        assert!(heap_use().expect("glibc").free < held);
        drop(kept);
    }
}
