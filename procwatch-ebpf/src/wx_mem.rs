//! W+X memory: mprotect, pkey_mprotect and mmap calls asking for PROT_WRITE|PROT_EXEC.
//! Also W+X the kernel grants without being asked for both at once (`READ_IMPLIES_EXEC`, a
//! file mapped shared W in one place and X in another). A call asking for neither W nor X
//! costs one comparison; a writable one a read of the task's personality.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use procwatch_common::{PROT_EXEC, PROT_WRITE, WxMemEvent, config, kind, ko, tp, wx_syscall};

use crate::{
    emit::{self, current, fill_header, is_self, reserve},
    maps::SHARED_EXEC,
    offsets, policy, task,
};

const WX: u64 = PROT_WRITE | PROT_EXEC;

/// Where one syscall keeps its arguments: `tp` slots of start, len, prot and the extra
/// argument reported as `flags` (none for mprotect).
struct Args {
    start: usize,
    len: usize,
    prot: usize,
    extra: Option<usize>,
}

#[tracepoint]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    // mprotect(start, len, prot)
    let args = Args {
        start: tp::MPROTECT_START,
        len: tp::MPROTECT_LEN,
        prot: tp::MPROTECT_PROT,
        extra: None,
    };
    let _ = try_wx(&ctx, wx_syscall::MPROTECT, &args);
    0
}

#[tracepoint]
pub fn sys_enter_pkey_mprotect(ctx: TracePointContext) -> u32 {
    // pkey_mprotect(start, len, prot, pkey)
    let args = Args {
        start: tp::PKEY_START,
        len: tp::PKEY_LEN,
        prot: tp::PKEY_PROT,
        extra: Some(tp::PKEY_PKEY),
    };
    let _ = try_wx(&ctx, wx_syscall::PKEY_MPROTECT, &args);
    0
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    // mmap(addr, len, prot, flags, fd, off)
    let args = Args {
        start: tp::MMAP_ADDR,
        len: tp::MMAP_LEN,
        prot: tp::MMAP_PROT,
        extra: Some(tp::MMAP_FLAGS),
    };
    let _ = try_wx(&ctx, wx_syscall::MMAP, &args);
    0
}

#[inline(always)]
fn try_wx(ctx: &TracePointContext, syscall: u32, args: &Args) -> Result<(), i64> {
    // SAFETY: syscall argument slots, offsets from the format file.
    let prot: u64 = unsafe { ctx.read_at(offsets::tp(args.prot)) }.map_err(i64::from)?;
    if prot & PROT_WRITE == 0 && (prot & PROT_EXEC == 0 || syscall != wx_syscall::MMAP) {
        return Ok(());
    }
    // SAFETY: as above.
    let start: u64 = unsafe { ctx.read_at(offsets::tp(args.start)) }.map_err(i64::from)?;
    // SAFETY: as above.
    let len: u64 = unsafe { ctx.read_at(offsets::tp(args.len)) }.map_err(i64::from)?;
    let extra: u64 = match args.extra {
        // SAFETY: as above.
        Some(slot) => unsafe { ctx.read_at(offsets::tp(slot)) }.map_err(i64::from)?,
        None => 0,
    };
    let fd: Option<u64> = if syscall == wx_syscall::MMAP {
        // SAFETY: as above.
        Some(unsafe { ctx.read_at(offsets::tp(tp::MMAP_FD)) }.map_err(i64::from)?)
    } else {
        None
    };
    on_wx(syscall, start, len, prot, extra, fd, 0);
    Ok(())
}

/// `MAP_SHARED` (uapi mman.h).
const MAP_SHARED: u64 = 0x01;
/// `MAP_ANONYMOUS`.
const MAP_ANONYMOUS: u64 = 0x20;
/// `READ_IMPLIES_EXEC` (uapi personality.h).
const READ_IMPLIES_EXEC: u32 = 0x040_0000;
/// `PROT_READ`.
const PROT_READ: u64 = 0x1;

/// Judges one mapping request and reports (and under the policy kills) a W+X one: W and X
/// asked for at once; a readable+writable one while `READ_IMPLIES_EXEC` makes the kernel
/// add X; a shared mapping of a file that gives the same pages W in one mapping and X in
/// another. `fd` is the mapped descriptor (mmap only); `hdr_flags` carries `COMPAT`.
#[inline(always)]
pub fn on_wx(
    syscall: u32,
    start: u64,
    len: u64,
    prot: u64,
    extra: u64,
    fd: Option<u64>,
    hdr_flags: u32,
) {
    let how = if prot & WX == WX {
        syscall
    } else if prot & (PROT_READ | PROT_WRITE) == PROT_READ | PROT_WRITE && read_implies_exec() {
        wx_syscall::READ_IMPLIES_EXEC
    } else if let Some(fd) = fd
        && extra & MAP_SHARED != 0
        && extra & MAP_ANONYMOUS == 0
        && shared_alias(fd, prot)
    {
        wx_syscall::SHARED_ALIAS
    } else {
        return;
    };
    let (pid_tgid, tgid) = current();
    if is_self(tgid) {
        return;
    }
    let action = policy::enforce(config::KILL_WX, tgid);
    let Some(mut entry) = reserve::<WxMemEvent>(kind::WX_MEM) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: reserved slot of the right size.
    unsafe {
        fill_header(
            &raw mut (*e).header,
            kind::WX_MEM,
            pid_tgid,
            action | hdr_flags,
        );
        (*e).syscall = how;
        (*e)._pad = 0;
        (*e).start = start;
        (*e).len = len;
        (*e).prot = prot;
        (*e).flags = extra;
    }
    emit::submit(entry, emit::Urgency::Urgent);
}

/// True when the current process runs with `READ_IMPLIES_EXEC` (set by `personality(2)`,
/// `setarch -X`, and kept across exec): every readable mapping is executable too.
#[inline(always)]
fn read_implies_exec() -> bool {
    if !offsets::kernel_known() {
        return false;
    }
    task::read::<u32>(task::current(), offsets::ko(ko::TASK_PERSONALITY))
        .is_some_and(|p| p & READ_IMPLIES_EXEC != 0)
}

/// True when a shared mapping of `fd` with `prot` makes pages both writable and executable
/// through two mappings: an executable one while the file has shared writable mappings
/// (`i_mmap_writable`), or a writable one of a file whose executable shared mapping was seen
/// (`SHARED_EXEC`). Executable shared mappings of a file are rare (the loader maps
/// privately), so remembering them costs little.
#[inline(always)]
fn shared_alias(fd: u64, prot: u64) -> bool {
    if !offsets::kernel_known() {
        return false;
    }
    let Some(file) = task::file_of_fd(fd) else {
        return false;
    };
    let Some(mapping) = task::read::<*const u8>(file, offsets::ko(ko::FILE_MAPPING)) else {
        return false;
    };
    let key = mapping as u64;
    if prot & PROT_EXEC != 0 {
        let writable = task::read::<i32>(mapping, offsets::ko(ko::MAPPING_WRITABLE)).unwrap_or(0);
        let _ = SHARED_EXEC.insert(key, 1, 0);
        writable > 0
    } else if prot & PROT_WRITE != 0 {
        // SAFETY: the value is only tested for presence.
        unsafe { SHARED_EXEC.get(key) }.is_some()
    } else {
        false
    }
}
