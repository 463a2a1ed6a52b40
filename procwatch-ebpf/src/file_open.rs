//! File opens (`openat`, `openat2`, `open`, 64-bit and ia32) under the watched prefixes. The path is read and
//! matched here, so only watched paths reach user space, and each (process, path) is sent
//! once: a process reading one file a million times costs one event. Paths only user space can
//! place are sent too (deduplicated the same way): relative ones (`cd /etc; cat shadow`) and
//! absolute ones holding `//` or a `.` component (`/var/../etc/shadow`, `/./etc`), which a
//! plain prefix test would let by.
use aya_ebpf::{helpers::generated, macros::tracepoint, programs::TracePointContext};
use procwatch_common::{
    AT_FDCWD, FILE_PATH_LEN, FileOpenEvent, OpenKey, WATCH_HEAD_LEN, WATCH_MAX, WATCH_TAIL_LEN,
    WatchPrefix, config, kind, open_call, tp,
};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    maps::{OPEN_SCRATCH, OPEN_SEEN, WATCH_PREFIXES},
    offsets, task,
};

/// `FILE_PATH_LEN - 1`, to keep indices inside the path for the verifier.
const PATH_MASK: usize = FILE_PATH_LEN - 1;

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let _ = try_open(
        &ctx,
        open_call::OPENAT,
        Some(tp::OPENAT_DFD),
        tp::OPENAT_FILENAME,
        Some(tp::OPENAT_FLAGS),
    );
    0
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // The flags of openat2 sit in a struct in user memory; they do not decide anything here.
    let _ = try_open(
        &ctx,
        open_call::OPENAT2,
        Some(tp::OPENAT2_DFD),
        tp::OPENAT2_FILENAME,
        None,
    );
    0
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let _ = try_open(
        &ctx,
        open_call::OPEN,
        None,
        tp::OPEN_FILENAME,
        Some(tp::OPEN_FLAGS),
    );
    0
}

// Inlined into each entry point: BPF calls take at most five register arguments.
#[inline(always)]
fn try_open(
    ctx: &TracePointContext,
    call: u32,
    dfd_slot: Option<usize>,
    name_slot: usize,
    flags_slot: Option<usize>,
) -> Result<(), i64> {
    if emit::config(config::WATCH_COUNT) == 0 {
        return Ok(());
    }
    // SAFETY: syscall argument slots, offsets from the format file.
    let name: *const u8 = unsafe { ctx.read_at(offsets::tp(name_slot)) }.map_err(i64::from)?;
    let dfd: i64 = match dfd_slot {
        // SAFETY: as above.
        Some(slot) => unsafe { ctx.read_at(offsets::tp(slot)) }.map_err(i64::from)?,
        None => i64::from(AT_FDCWD),
    };
    let open_flags: u64 = match flags_slot {
        // SAFETY: as above.
        Some(slot) => unsafe { ctx.read_at(offsets::tp(slot)) }.map_err(i64::from)?,
        None => 0,
    };
    let _ = on_open(call, dfd, name, open_flags, 0);
    Ok(())
}

/// An open of `name` (relative to `dfd`) by the current task, 64-bit or ia32 (`hdr_flags`
/// carries `COMPAT` for the latter): sent when the path is watched or only user space can
/// place it, once per (process, path).
#[inline(always)]
pub fn on_open(
    call: u32,
    dfd: i64,
    name: *const u8,
    open_flags: u64,
    hdr_flags: u32,
) -> Option<()> {
    let watched = emit::config(config::WATCH_COUNT);
    if watched == 0 {
        return None;
    }
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return None;
    }
    let scratch = OPEN_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, only this program on this CPU uses it while it runs.
    let (path, n) = unsafe {
        let path = (*scratch).path.as_mut_ptr();
        let read =
            generated::bpf_probe_read_user_str(path.cast(), FILE_PATH_LEN as u32, name.cast());
        if read <= 1 {
            return None;
        }
        (path.cast_const(), (read - 1) as usize)
    };
    // SAFETY: `path` holds FILE_PATH_LEN bytes; every index below is masked into it.
    let first = unsafe { *path };
    // The prefix test first: it never compares against the length, so the verifier meets one
    // state there, not one per length range the other loops leave behind.
    let send = first != b'/' || under_watched(path, watched) || irregular(path, n);
    if !send {
        return None;
    }
    let key = OpenKey {
        tgid,
        _pad: 0,
        start_ns: task::process_start_ns(task::current()),
        path_hash: hash(path, n),
    };
    // SAFETY: a lookup by value in an LRU map.
    if unsafe { OPEN_SEEN.get(key) }.is_some() {
        return None;
    }
    let _ = OPEN_SEEN.insert(key, 1u8, 0);
    let Some(mut entry) = reserve::<FileOpenEvent>(kind::FILE_OPEN) else {
        // Not sent: forget it, so the next open of the path tries again.
        let _ = OPEN_SEEN.remove(key);
        return None;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size; the copy is a helper call, not a memcpy.
    unsafe {
        fill_header(&raw mut (*e).header, kind::FILE_OPEN, pid_tgid, hdr_flags);
        (*e).syscall = call;
        (*e).dfd = dfd as i32;
        (*e).open_flags = open_flags as u32;
        (*e).path_len = n as u32;
        generated::bpf_probe_read_kernel(
            (*e).path.as_mut_ptr().cast(),
            FILE_PATH_LEN as u32,
            path.cast(),
        );
    }
    emit::submit(entry, emit::Urgency::Bulk);
    Some(())
}

/// A byte of the path.
#[inline(always)]
fn at(path: *const u8, i: usize) -> u8 {
    // SAFETY: the index is masked into the FILE_PATH_LEN-byte buffer.
    unsafe { *path.add(i & PATH_MASK) }
}

/// Eight bytes of the path from byte `8 × w` (`w` masked into the buffer).
#[inline(always)]
fn word(path: *const u8, w: usize) -> u64 {
    // SAFETY: 8-aligned (the path sits at offset 72 of the scratch record) and masked so the
    // eight bytes stay inside the buffer.
    unsafe { core::ptr::read(path.add((w * 8) & (PATH_MASK & !7)).cast::<u64>()) }
}

/// Little-endian mask of the first `n` bytes of a word (`n` from 1 to 7).
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    (1u64 << ((n & 7) * 8)) - 1
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `v` that is zero (exact, no false positives).
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    !((((v & !HIGHS).wrapping_add(!HIGHS)) | v) | !HIGHS)
}

/// True when a `/` is followed by `/` or `.`: the path is not in canonical form, and only
/// user space (which normalises it) can tell where it leads. Word at a time: the verifier
/// walks 32 short steps, not 256 branching ones.
#[inline(always)]
fn irregular(path: *const u8, n: usize) -> bool {
    let mut w = 0;
    while w < FILE_PATH_LEN / 8 {
        if w * 8 >= n {
            break;
        }
        let v = word(path, w);
        // The byte after each byte: this word shifted, topped up by the next word's first.
        let next = (v >> 8) | (word(path, w + 1) << 56);
        let slash = zero_bytes(v ^ (ONES * u64::from(b'/')));
        let odd = zero_bytes(next ^ (ONES * u64::from(b'/')))
            | zero_bytes(next ^ (ONES * u64::from(b'.')));
        let rem = n - w * 8;
        // Only slashes inside the path count (what follows its NUL is an older path's).
        let valid = if rem >= 8 { u64::MAX } else { low_bytes(rem) };
        if slash & odd & valid != 0 {
            return true;
        }
        w += 1;
    }
    false
}

/// True when the path starts with one of the first `count` watched prefixes.
#[inline(always)]
fn under_watched(path: *const u8, count: u64) -> bool {
    let mut i = 0u32;
    while i < WATCH_MAX {
        if u64::from(i) >= count {
            break;
        }
        if let Some(w) = WATCH_PREFIXES.get(i)
            && matches(path, w)
        {
            return true;
        }
        i += 1;
    }
    false
}

/// One prefix: masked word compares of the head (no branch inside), then a component
/// boundary, or with a `*` the tail at the very end (user space applies the `*` rule again).
/// Nothing here compares against the path's length: a head longer than the path fails on the
/// path's NUL, and a tail is read from the 16 bytes before the first NUL byte (found with
/// the same word trick), so the verifier's state does not split per length.
#[inline(always)]
fn matches(path: *const u8, w: &WatchPrefix) -> bool {
    let head = w.head_len as usize;
    if head == 0 {
        return false;
    }
    let mut diff = 0u64;
    let mut k = 0;
    while k < WATCH_HEAD_LEN / 8 {
        diff |= (word(path, k) ^ w.head[k]) & w.head_mask[k];
        k += 1;
    }
    if diff != 0 {
        return false;
    }
    if w.star == 0 {
        let next = at(path, head);
        return w.open_end != 0 || next == b'/' || next == 0;
    }
    let end = path_end(path);
    // The last 16 bytes before the end (before the path: the scratch record's own fields,
    // masked off unless the tail is longer than the path, which user space then rejects).
    let mut last = [0u64; WATCH_TAIL_LEN / 8];
    // SAFETY: a fault-tolerant kernel read into a stack buffer of the size given.
    let read = unsafe {
        generated::bpf_probe_read_kernel(
            last.as_mut_ptr().cast(),
            WATCH_TAIL_LEN as u32,
            path.wrapping_add(end).wrapping_sub(WATCH_TAIL_LEN).cast(),
        )
    };
    read == 0
        && ((last[0] ^ w.tail[0]) & w.tail_mask[0]) | ((last[1] ^ w.tail[1]) & w.tail_mask[1]) == 0
}

/// Where the path's first NUL is (FILE_PATH_LEN when it has none), one word at a time.
#[inline(always)]
fn path_end(path: *const u8) -> usize {
    let mut w = 0;
    while w < FILE_PATH_LEN / 8 {
        let z = zero_bytes(word(path, w));
        if z != 0 {
            return w * 8 + (z.trailing_zeros() as usize) / 8;
        }
        w += 1;
    }
    FILE_PATH_LEN
}

/// FNV-1a style over the path's words (the bytes past its end masked off).
#[inline(always)]
fn hash(path: *const u8, n: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut w = 0;
    while w < FILE_PATH_LEN / 8 {
        if (w + 1) * 8 > n {
            break;
        }
        h = mix(h, word(path, w));
        w += 1;
    }
    let rem = n - w * 8;
    if rem > 0 && w < FILE_PATH_LEN / 8 {
        h = mix(h, word(path, w) & low_bytes(rem));
    }
    h ^ n as u64
}

#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    let h = (h ^ v).wrapping_mul(0x0100_0000_01b3);
    h ^ (h >> 29)
}
